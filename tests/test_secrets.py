"""No secret leaves the process (issue 14): secrets planted everywhere a HAK-GAL deployment has them,
the service run the three ways of the issue, and every byte each receiver got searched, and the
service's own output.

Run modes (one module-scoped fixture each, a real server subprocess):

a. ``python -m otel_hakgal.demo.api`` on the shipped ``configs/sentry+otlp.toml`` (DSN and endpoint
   from the environment), every request header captured;
b. the ``opentelemetry-instrument`` launcher with gunicorn (threaded worker), backends
   ``sentry-otlp`` and ``otlp``, ``OTEL_EXPORTER_OTLP_HEADERS`` set, and the provider keys in a
   ``.env`` that the app loads at import, after the launcher's ``setup()``;
c. ``jsonl`` plus ``console`` (plus ``prometheus``, scraped) with prompt capture on and the default
   ``text_mode``.

Each secret is searched verbatim, by its random parts, and normalised (case-folded, letters and
digits only) in a normalised copy of each haystack: the formula ``PasswordHunter2X`` is a leak of
``hunter2-x``. The DSN public key is not a secret; it must appear exactly where Sentry needs it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import string
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from otel_hakgal.demo.simulator import PROVIDERS, FaultKind, LLMSimulator
from otel_hakgal.demo.workload import WORKLOAD, run_workload
from otel_hakgal.redaction import REDACTED
from otel_hakgal.testing import ReceivedSpan, jsonl_spans
from otel_hakgal.testing.receiver import decode_traces
from tests.support.leaks import (
    Haystack,
    Leak,
    RecordingOtlpReceiver,
    RecordingSentryReceiver,
    Request,
    Secret,
    bodies_blob,
    find_leaks,
    headers_blob,
    token,
    word,
)
from tests.support.processes import ROOT, VENV_BIN, ServerProcess, clean_env, free_port

pytestmark = [pytest.mark.system, pytest.mark.slow]

HEX = "0123456789abcdef"
SENTRY_OTLP_CONFIG = ROOT / "configs" / "sentry+otlp.toml"
INSTRUMENT = str(VENV_BIN / "opentelemetry-instrument")
REQUEST_TIMEOUT_S = 60.0


# --- what is planted ------------------------------------------------------------------------


@dataclass
class Planting:
    """Every secret of one run, and the requests, headers and environment that carry them."""

    secrets: dict[str, Secret] = field(default_factory=dict)
    provider_keys: dict[str, str] = field(default_factory=dict)  # env var -> value (environment or .env)
    commands: list[str] = field(default_factory=list)  # sent with ``headers`` and ``?api_key=``
    headers: dict[str, str] = field(default_factory=dict)
    query_params: list[tuple[str, str]] = field(default_factory=list)  # each on its own request
    paths: list[tuple[str, str]] = field(default_factory=list)  # (method, path): 404s
    otlp_headers: dict[str, str] = field(default_factory=dict)  # OTEL_EXPORTER_OTLP_HEADERS (mode b)

    def add(self, name: str, value: str, channel: str, parts: tuple[str, ...] = ()) -> str:
        assert name not in self.secrets, name
        self.secrets[name] = Secret(name, value, channel, parts)
        return value

    def command(self, text: str) -> None:
        self.commands.append(text)

    def query(self, param: str) -> str:
        return next(f"?{name}={value}" for name, value in self.query_params if name == param)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def plant(keys_from: str, otlp_exporter_headers: bool = False) -> Planting:
    """A fresh set of unique secrets. ``keys_from``: where the provider keys live (for the report)."""
    p = Planting()

    # Provider keys and the database password; each provider echoes its key back in a 401.
    keys = {
        "DEEPSEEK_API_KEY": p.add("env_deepseek_key", "sk-" + token(40), f"DEEPSEEK_API_KEY in {keys_from}, 401 echo"),
        # no recognisable shape: only knowing the variable gives it away
        "MISTRAL_API_KEY": p.add("env_mistral_key", token(32), f"MISTRAL_API_KEY in {keys_from}, 401 echo"),
        "GEMINI_API_KEY": p.add("env_gemini_key", "AIza" + token(35), f"GEMINI_API_KEY in {keys_from}, 401 echo"),
        "HAKGAL_DB_PASSWORD": p.add(
            "env_db_password", token(24), f"HAKGAL_DB_PASSWORD in {keys_from}, typed into a question"
        ),
    }
    p.provider_keys = keys

    # Typed into commands. A "channel" names the command form.
    def typed(name: str, value: str, template: str, parts: tuple[str, ...] = ()) -> None:
        command = template.format(value)
        p.add(name, value, f"command {command.split(' ', 1)[0]}: {template.format('<secret>')!r}", parts)
        p.command(command)

    typed("question_sk_key", "sk-" + token(32), "ask Is my key {} a city?")
    typed("question_password_assignment", token(20), "ask password={} Is Berlin a city?")
    typed("question_dsn_key", token(32, HEX), "ask Does https://{}@o1.ingest.example/5 know Rome?")
    dsn_public, dsn_secret = token(32, HEX), token(32, HEX)
    p.add("question_legacy_dsn_public_key", dsn_public, "command ask: a legacy DSN <public>:<secret>@ in a question")
    p.add("question_legacy_dsn_secret", dsn_secret, "command ask: a legacy DSN <public>:<secret>@ in a question")
    p.command(f"ask Is https://{dsn_public}:{dsn_secret}@o2.ingest.example/7 a city?")  # formula: Https<pub><sec>...
    typed("question_bearer", token(40), "ask Authorization: Bearer {}")
    p.command(f"ask Is {keys['HAKGAL_DB_PASSWORD']} a city?")  # the env value typed in: formula IstStadt(<it>)
    # passwords in prose
    typed("prose_password_is", token(20), "ask my password is {}, is Rome a city?")
    typed("prose_password_was", token(20), "ask The password was {} before the reset. Is Rome a city?")
    typed("prose_password_set_to", token(20), "ask I set the password to {} yesterday, is Rome a city?")
    typed("prose_api_key_is", token(32), "ask my api key is {}, does it work?")
    # assignment values holding & , ; }
    for name, key, separator in (
        ("assignment_ampersand", "password", "&"),
        ("assignment_comma", "db_password", ","),
        ("assignment_semicolon", "secret", ";"),
        ("assignment_brace", "token", "}"),
    ):
        left, right = token(9), token(9)
        typed(name, f"{left}{separator}{right}", f"ask {key}={{}} is that strong?", (left, right))
    words = (word(), word(), word())
    typed("assignment_multi_word", " ".join(words), "ask wifi password: {}", words)
    # derived copies: the app builds formulas and facts from the text
    suffix = token(10, string.ascii_lowercase + string.digits)
    typed("derived_formula_hunter2", f"hunter2-{suffix}", "ask Is password={} a city?", (suffix,))
    typed("derived_explain_api_key", token(24), "explain Is api_key={} a city?")
    typed("derived_learned_fact", "Vault" + token(16), "learn password={} lies in Berlin.")  # LiegtIn(Vault..., Berlin)
    typed("add_raw_sk_key", "sk-" + token(24), "add_raw Schluessel({}).")
    typed("parse_password", token(16), "parse Passwort(password={}).")
    typed("retract_password", token(16), "retract Token(password={}).")
    typed("what_is_password", token(16), "what_is password={}")
    typed("search_api_key", token(24), "search api_key={}")
    # sk- keys in build_kb names, so in exception messages
    typed("build_kb_sk_key", "sk-" + token(32), "build_kb {}.hkb")
    typed("build_kb_sk_proj_key", "sk-proj-" + token(40), "build_kb {}.txt")
    # more shapes a deployment sees in questions
    typed("question_aws_secret", token(40), "ask aws_secret_access_key={}")
    typed("question_github_token", "ghp_" + token(36), "ask Is {} a valid token?")
    slack = f"xoxb-{token(12, string.digits)}-{token(12, string.digits)}-{token(24)}"
    typed("question_slack_token", slack, "ask Why does {} fail?")
    jwt = f"eyJ{token(20)}.eyJ{token(40)}.{token(43)}"
    typed("question_jwt", jwt, "ask Is this JWT valid: {}?")
    typed("question_json_api_key", token(32), 'ask {{"api_key": "{}"}} is my config')
    typed("question_credentials", token(24), "ask credentials: {}")
    typed("question_database_url", token(20), "ask Can you reach postgres://hakgal:{}@db.internal:5432/kb?")
    typed("question_openai_key", "sk-proj-" + token(48), "ask export OPENAI_API_KEY={}")
    basic = _b64(f"admin:{token(20)}")
    typed("question_basic_auth", basic, "ask Authorization: Basic {}")
    typed("question_google_key", "AIza" + token(35), "ask Why is {} rejected?")

    # Request headers, sent with every planted command.
    cookie_session, cookie_csrf = token(24), token(32)
    p.add("header_cookie_session", cookie_session, "header Cookie: session=")
    p.add("header_cookie_csrf", cookie_csrf, "header Cookie: csrftoken=")
    proxy_password = token(16)
    p.headers = {
        "Authorization": "Bearer " + p.add("header_bearer", token(40), "header Authorization: Bearer"),
        "X-Api-Key": p.add("header_api_key", token(32), "header X-Api-Key"),
        "Cookie": f"session={cookie_session}; csrftoken={cookie_csrf}",
        "Proxy-Authorization": "Basic "
        + p.add("header_proxy_authorization", _b64(f"proxy:{proxy_password}"), "header Proxy-Authorization: Basic"),
        "X-Auth-Token": p.add("header_x_auth_token", token(32), "header X-Auth-Token"),
        "X-Goog-Api-Key": p.add("header_goog_api_key", "AIza" + token(35), "header X-Goog-Api-Key"),
    }

    # Query parameters (api_key rides on every planted command; each one also alone).
    for param, value in (
        ("api_key", token(32)),
        ("key", token(39)),  # Google API style, no recognisable shape
        ("access_token", token(40)),
        ("token", token(32)),
        ("client_secret", token(32)),
        ("password", token(20)),
    ):
        p.add(f"query_{param}", value, f"query ?{param}=")
        p.query_params.append((param, value))

    # Keys in URL paths: 404s.
    sk_in_path = p.add("path_sk_key", "sk-" + token(32), "URL path /api/v1/<sk-...>/command")
    github_in_path = p.add("path_github_token", "ghp_" + token(36), "URL path /hooks/<ghp_...>/deliveries")
    p.paths = [("POST", f"/api/v1/{sk_in_path}/command"), ("GET", f"/hooks/{github_in_path}/deliveries")]

    if otlp_exporter_headers:
        p.otlp_headers = {
            "authorization": "Bearer " + p.add("otlp_exporter_bearer", token(40), "OTEL_EXPORTER_OTLP_HEADERS"),
            "x-honeycomb-team": p.add("otlp_exporter_honeycomb", token(32), "OTEL_EXPORTER_OTLP_HEADERS"),
        }
    return p


# --- talking to the service -------------------------------------------------------------------


def http_request(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return int(response.status)
    finally:
        connection.close()


def post_command(port: int, command: str, headers: dict[str, str], query: str = "", path: str = "/api/command") -> int:
    body = json.dumps({"command": command}).encode()
    return http_request(port, "POST", path + query, body, {"Content-Type": "application/json", **headers})


@dataclass
class Driven:
    statuses: dict[str, int]  # planted request -> HTTP status
    auth_rejections: Counter[str]  # provider -> requests the simulator rejected with a 401 echoing the key
    server_fault_status: int  # the deliberate server fault, sent with the planted headers and query


def drive(port: int, simulator: LLMSimulator, planting: Planting) -> Driven:
    """The demo's workload, then every planted secret sent."""
    statuses: dict[str, int] = {}
    run_workload(f"http://127.0.0.1:{port}", simulator, WORKLOAD)
    api_key = planting.query("api_key")
    for command in planting.commands:
        statuses[command] = post_command(port, command, planting.headers, query=api_key)
    for param, value in planting.query_params:
        statuses[f"?{param}="] = post_command(port, "status", planting.headers, query=f"?{param}={value}")
    statuses["GET /api/test?key="] = http_request(
        port, "GET", "/api/test" + planting.query("key"), None, planting.headers
    )
    for method, path in planting.paths:
        body = json.dumps({"command": "status"}).encode() if method == "POST" else None
        statuses[f"{method} {path}"] = http_request(port, method, path, body, planting.headers)
    # Every provider rejects its key and echoes it back, as real providers do.
    for provider in PROVIDERS:
        simulator.inject(provider, FaultKind.AUTH, times=None)
    try:
        statuses["ask under 401s"] = post_command(port, "ask Is Paris a city?", planting.headers)
        statuses["explain under 401s"] = post_command(port, "explain Is Rome a city?", planting.headers)
        statuses["learn under 401s"] = post_command(port, "learn Madrid is the capital of Spain.", planting.headers)
    finally:
        simulator.clear_faults()
    rejections = Counter(seen.provider for seen in simulator.requests() if seen.fault == FaultKind.AUTH)
    # A server fault (the demo's damaged data file) with the planted headers and query on the request:
    # the error event's request data must be scrubbed too.
    fault = post_command(port, "build_kb damaged.hkb", planting.headers, query=f"{api_key}&{planting.query('key')[1:]}")
    return Driven(statuses, rejections, fault)


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return bytes(response.read())


# --- one run ----------------------------------------------------------------------------------


@dataclass
class Run:
    """What one run mode planted and what every receiver, and the service's own output, got."""

    mode: str
    planting: Planting
    haystacks: list[Haystack]
    statuses: dict[str, int]
    auth_rejections: Counter[str]
    otlp: RecordingOtlpReceiver | None = None
    sentry: RecordingSentryReceiver | None = None
    jsonl_path: Path | None = None
    stdout: str = ""
    stderr: str = ""
    leaks: list[Leak] = field(default_factory=list)
    env_file_loaded: bool | None = None  # mode b: the app, imported as gunicorn does, has the .env keys

    def otlp_spans(self) -> list[ReceivedSpan]:
        if self.otlp is None:
            return []
        return [span for r in self.otlp.trace_requests() for span in decode_traces(r.body)]

    def haystack(self, name: str) -> bytes:
        return next(h.data for h in self.haystacks if h.name == name)

    def summary(self) -> str:
        leaked = sorted({leak.secret for leak in self.leaks})
        text = f"{self.mode}: {len(self.planting.secrets)} secrets planted, {len(leaked)} leaked"
        if self.sentry is not None:
            text += f" (Sentry got {len(self.sentry.errors())} error events, {len(self.sentry.requests)} requests)"
        return text


def _receiver_haystacks(otlp: RecordingOtlpReceiver | None, sentry: RecordingSentryReceiver | None) -> list[Haystack]:
    stacks = []
    if otlp is not None:
        stacks.append(Haystack("otlp bodies", bodies_blob(otlp.requests)))
        # the OTLP exporter's own headers are where they belong
        stacks.append(Haystack("otlp request headers", headers_blob(otlp.requests), frozenset(_otlp_header_names())))
    if sentry is not None:
        envelopes = [r for r in sentry.requests if "/envelope" in r.path]
        stacks.append(Haystack("sentry envelopes", bodies_blob(envelopes)))
        stacks.append(Haystack("sentry otlp bodies", bodies_blob(sentry.otlp_requests())))
        stacks.append(Haystack("sentry request headers", headers_blob(sentry.requests)))
    return stacks


def _otlp_header_names() -> tuple[str, ...]:
    return ("otlp_exporter_bearer", "otlp_exporter_honeycomb")


def _output_haystacks(stdout: str, stderr: str, stdout_name: str = "service stdout") -> list[Haystack]:
    return [
        Haystack(stdout_name, stdout.encode("utf-8", "surrogateescape")),
        Haystack("service stderr (its log)", stderr.encode("utf-8", "surrogateescape")),
    ]


def _finish(run: Run, directory: Path) -> Run:
    """Search for leaks; keep every haystack in ``directory`` as evidence."""
    run.leaks = find_leaks(run.planting.secrets.values(), run.haystacks)
    for stack in run.haystacks:
        (directory / (stack.name.replace(" ", "-").replace("/", "-") + ".bin")).write_bytes(stack.data)
    (directory / "planted.json").write_text(json.dumps({s.name: s.value for s in run.planting.secrets.values()}))
    print("\n" + run.summary(), f"  (haystacks in {directory})", *(f"  {leak}" for leak in run.leaks), sep="\n")
    return run


def _serve(
    argv: list[str],
    env: dict[str, str],
    port: int,
    log_path: Path,
    work: Callable[[], Driven],
    cwd: Path = ROOT,
) -> tuple[Driven, str, str]:
    """Start the server (stderr to ``log_path``), run ``work``, stop it; returns statuses, stdout, stderr."""
    with log_path.open("w") as log:
        server = ServerProcess(argv, env, port, cwd=cwd, stderr=log)
        try:
            server.wait_ready(timeout_s=60)
            driven = work()
        finally:
            stdout = server.stop()
    return driven, stdout, log_path.read_text(encoding="utf-8", errors="surrogateescape")


@pytest.fixture(scope="module")
def mode_a(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``python -m otel_hakgal.demo.api`` on ``configs/sentry+otlp.toml``, all request headers captured."""
    tmp = tmp_path_factory.mktemp("mode-a")
    planting = plant("the environment")
    port = free_port()
    with LLMSimulator() as simulator, RecordingOtlpReceiver() as otlp, RecordingSentryReceiver() as sentry:
        env = clean_env(
            OTEL_HAKGAL_CONFIG=str(SENTRY_OTLP_CONFIG),
            SENTRY_DSN=sentry.dsn,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=".*",
            HAKGAL_PORT=str(port),
            HAKGAL_LLM_BASE_URL=simulator.base_url,
            **planting.provider_keys,
        )
        driven, stdout, stderr = _serve(
            [sys.executable, "-m", "otel_hakgal.demo.api"],
            env,
            port,
            tmp / "service.log",
            lambda: drive(port, simulator, planting),
        )
        haystacks = _receiver_haystacks(otlp, sentry) + _output_haystacks(stdout, stderr)
        run = Run("a: python -m, sentry+otlp.toml", planting, haystacks, driven.statuses, driven.auth_rejections)
        run.otlp, run.sentry = otlp, sentry
        run.stdout, run.stderr = stdout, stderr
        return _finish(run, tmp)


def _env_file_loaded(env: dict[str, str], cwd: Path, keys: dict[str, str]) -> bool:
    """Whether importing the app (as gunicorn does, in ``cwd``) puts the ``.env`` keys into its environment."""
    code = (
        "import hashlib, json, os, sys, otel_hakgal.demo.api\n"
        "print(json.dumps({k: hashlib.sha256(os.environ.get(k, '').encode()).hexdigest() for k in sys.argv[1:]}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *keys], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )
    expected = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in keys.items()}
    lines = result.stdout.strip().splitlines()
    return bool(lines) and json.loads(lines[-1]) == expected


@pytest.fixture(scope="module")
def mode_b(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The launcher with gunicorn (threaded), ``sentry-otlp`` + ``otlp``, OTLP headers, provider keys in a ``.env``."""
    tmp = tmp_path_factory.mktemp("mode-b")
    planting = plant("a .env loaded at import", otlp_exporter_headers=True)
    # The app loads ./.env at import (after the launcher's setup()); the keys are not in the environment.
    (tmp / ".env").write_text("".join(f"{name}={value}\n" for name, value in planting.provider_keys.items()))
    port = free_port()
    with LLMSimulator() as simulator, RecordingOtlpReceiver() as otlp, RecordingSentryReceiver() as sentry:
        env = clean_env(
            OTEL_HAKGAL_BACKENDS="sentry-otlp,otlp",
            SENTRY_DSN=sentry.dsn,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            OTEL_EXPORTER_OTLP_HEADERS=",".join(f"{k}={v}" for k, v in planting.otlp_headers.items()),
            OTEL_BSP_SCHEDULE_DELAY="200",
            OTEL_METRIC_EXPORT_INTERVAL="2000",
            HAKGAL_LLM_BASE_URL=simulator.base_url,
        )
        for name in planting.provider_keys:
            assert name not in env
        gunicorn = [str(VENV_BIN / "gunicorn"), "-w", "1", "--threads", "8", "--timeout", "120"]
        argv = [INSTRUMENT, *gunicorn, "-b", f"127.0.0.1:{port}", "otel_hakgal.demo.api:app"]
        driven, stdout, stderr = _serve(
            argv, env, port, tmp / "service.log", lambda: drive(port, simulator, planting), cwd=tmp
        )
        haystacks = _receiver_haystacks(otlp, sentry) + _output_haystacks(stdout, stderr)
        mode = "b: launcher+gunicorn, sentry-otlp+otlp, .env"
        run = Run(mode, planting, haystacks, driven.statuses, driven.auth_rejections, otlp=otlp, sentry=sentry)
        run.env_file_loaded = _env_file_loaded(env, tmp, planting.provider_keys)
        run.stdout, run.stderr = stdout, stderr
        return _finish(run, tmp)


@pytest.fixture(scope="module")
def mode_c(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """``jsonl`` + ``console`` (+ ``prometheus``, scraped) with prompt capture on, ``text_mode`` default."""
    tmp = tmp_path_factory.mktemp("mode-c")
    planting = plant("the environment")
    jsonl_path = tmp / "spans.jsonl"
    port, metrics_port = free_port(), free_port()
    config = tmp / "jsonl-console.toml"
    config.write_text(
        'backends = ["jsonl", "console", "prometheus"]\n'
        f'[jsonl]\npath = "{jsonl_path}"\n'
        '[console]\nstream = "stdout"\n'
        f"[prometheus]\nport = {metrics_port}\n"
        "[genai]\ncapture_message_content = true\n"
        "[export]\nmetric_interval = 0.5\n"
    )
    scraped: list[bytes] = []
    with LLMSimulator() as simulator:
        env = clean_env(
            OTEL_HAKGAL_CONFIG=str(config),
            HAKGAL_PORT=str(port),
            HAKGAL_LLM_BASE_URL=simulator.base_url,
            **planting.provider_keys,
        )

        def work() -> Driven:
            driven = drive(port, simulator, planting)
            scraped.append(scrape(metrics_port))
            return driven

        driven, stdout, stderr = _serve(
            [sys.executable, "-m", "otel_hakgal.demo.api"], env, port, tmp / "service.log", work
        )
    haystacks = [
        Haystack("jsonl", jsonl_path.read_bytes() if jsonl_path.exists() else b""),
        Haystack("prometheus scrape", b"".join(scraped)),
        *_output_haystacks(stdout, stderr, stdout_name="console (service stdout)"),
    ]
    run = Run("c: jsonl+console, prompts captured", planting, haystacks, driven.statuses, driven.auth_rejections)
    run.jsonl_path = jsonl_path
    run.stdout, run.stderr = stdout, stderr
    return _finish(run, tmp)


MODES = ["mode_a", "mode_b", "mode_c"]
SENTRY_MODES = ["mode_a", "mode_b"]


@pytest.fixture(params=MODES)
def run(request: pytest.FixtureRequest) -> Run:
    result: Run = request.getfixturevalue(request.param)
    return result


@pytest.fixture(params=SENTRY_MODES)
def sentry_run(request: pytest.FixtureRequest) -> Run:
    result: Run = request.getfixturevalue(request.param)
    return result


# --- the tests ------------------------------------------------------------------------------


def test_the_leak_search_sees_parts_and_derived_copies() -> None:
    """The search itself: a formula built from the text, or the tail a scrubber left, is a leak."""
    derived = Secret("derived", "hunter2-ab12cd34ef", "test", ("ab12cd34ef",))
    split = Secret("split", "Xk3pQ9zLm&Rt7wV2nB5", "test")
    assert find_leaks([derived], [Haystack("formula", b"IstStadt(PasswordHunter2Ab12cd34ef).")])
    assert find_leaks([split], [Haystack("tail", b'"password=[REDACTED]&Rt7wV2nB5 is it strong?"')])
    assert find_leaks([split], [Haystack("case", b"xK3PQ9ZLM")])
    clean = Haystack("clean", b"password=[REDACTED] IstStadt(Password[REDACTED]).")
    assert not find_leaks([derived, split], [clean])
    assert not find_leaks([derived], [Haystack("allowed", b"hunter2-ab12cd34ef", frozenset({"derived"}))])


def _leak_report(run: Run) -> str:
    by_secret = Counter(leak.secret for leak in run.leaks)
    lines = [run.summary() + ":"]
    lines += [f"  {leak}" for leak in run.leaks]
    lines.append(f"  leaked secrets: {sorted(by_secret)}")
    return "\n".join(lines)


def test_no_planted_secret_reaches_a_receiver_or_the_service_log(run: Run) -> None:
    assert not run.leaks, _leak_report(run)


def test_the_planted_data_really_flowed_redacted(run: Run) -> None:
    """The search above could pass vacuously: every receiver got data, the planted requests arrived,
    redacted, and the providers' 401 echoes too (so the keys were sent, also those from a ``.env``)."""
    problems = []
    for stack in run.haystacks:
        if stack.name in ("sentry otlp bodies",) and run.mode.startswith("a"):
            continue  # the span-processor mode sends envelopes only
        if not stack.data and not stack.name.startswith("service"):  # the service need not print
            problems.append(f"{stack.name} received nothing")
    telemetry = run.haystack("jsonl") if run.otlp is None else run.haystack("otlp bodies")
    if REDACTED.encode() not in telemetry:
        problems.append("no redacted value in the telemetry")
    if b"Incorrect API key provided: " + REDACTED.encode() not in telemetry:
        problems.append("no provider's 401 echo (redacted) in the telemetry")
    unrejected = [p for p in ("deepseek", "mistral", "gemini") if not run.auth_rejections[p]]
    if unrejected:
        problems.append(f"these providers were never asked under the 401 fault, so never echoed a key: {unrejected}")
    if run.env_file_loaded is False:
        problems.append("the app did not load the provider keys from the .env")
    if run.sentry is not None:
        sentry_data = run.haystack("sentry envelopes") + run.haystack("sentry otlp bodies")
        if REDACTED.encode() not in sentry_data:
            problems.append("Sentry received no redacted value")
        if not run.sentry.errors():
            problems.append("Sentry received no error event (the demo's damaged data file is a server fault)")
    # every planted command was traced: one command span per verb and request
    names = Counter(_command_verbs(run))
    wanted = Counter(command.split(" ", 1)[0] for command in run.planting.commands)
    missing = {verb: n - names[verb] for verb, n in wanted.items() if names[verb] < n}
    if missing:
        problems.append(f"command spans missing for planted commands: {missing}")
    # mode a captures all request headers: the Authorization value must be there, redacted
    if run.mode.startswith("a") and b"http.request.header.authorization" not in telemetry:
        problems.append("the captured Authorization header is not in the spans")
    statuses = {request: status for request, status in run.statuses.items() if status >= 500}
    assert not problems, f"{run.mode}: {problems}; 5xx among planted requests: {statuses}"


def _command_verbs(run: Run) -> list[str]:
    if run.otlp is not None:
        return [
            str(s.attributes.get("hakgal.command.name"))
            for s in run.otlp_spans()
            if s.name.startswith("hakgal.command")
        ]
    assert run.jsonl_path is not None
    verbs = []
    for span in jsonl_spans(run.jsonl_path):
        if span["name"].startswith("hakgal.command"):
            for attribute in span.get("attributes", []):
                if attribute["key"] == "hakgal.command.name":
                    verbs.append(attribute["value"].get("stringValue", ""))
    return verbs


def test_the_dsn_public_key_appears_exactly_where_sentry_needs_it(sentry_run: Run) -> None:
    """``trace.public_key`` in every envelope with a trace header, the ``dsn`` header (if sent) and X-Sentry-Auth;
    nowhere else."""
    assert sentry_run.sentry is not None
    key = sentry_run.sentry.public_key
    dsn = sentry_run.sentry.dsn
    assert len(key) == 32 and all(c in HEX for c in key)  # realistic: the scrubber's minimum length does not hide it
    problems = []
    traced = 0
    rest = []  # the envelopes without the places the key belongs
    for request, envelope in sentry_run.sentry.envelope_requests():
        headers = dict(envelope.headers)
        trace = dict(headers.pop("trace", None) or {})
        if trace:
            traced += 1
            if trace.get("public_key") != key:
                problems.append(f"envelope trace header public_key = {trace.get('public_key')!r}")
            trace.pop("public_key", None)
        if "dsn" in headers and headers.pop("dsn") != dsn:
            problems.append("envelope dsn header is not the DSN")
        first_line_end = request.body.find(b"\n")
        rest.append(json.dumps({**headers, "trace": trace}).encode() + request.body[first_line_end:])
    if not traced:
        problems.append("no envelope with a trace header arrived")
    for request in sentry_run.sentry.requests:
        if f"sentry_key={key}" not in request.headers.get("x-sentry-auth", ""):
            problems.append(f"{request.path}: X-Sentry-Auth without the key: {request.headers.get('x-sentry-auth')!r}")
    other_headers = [
        Request(r.path, {k: v for k, v in r.headers.items() if k != "x-sentry-auth"}, b"")
        for r in sentry_run.sentry.requests
    ]
    elsewhere = [
        Haystack("sentry envelopes (outside the trace and dsn headers)", b"\n".join(rest)),
        Haystack("sentry request headers (outside X-Sentry-Auth)", headers_blob(other_headers)),
        *(h for h in sentry_run.haystacks if not h.name.startswith("sentry")),
        Haystack("sentry otlp bodies", sentry_run.haystack("sentry otlp bodies")),
    ]
    public = Secret("dsn_public_key", key, "SENTRY_DSN")
    problems += [f"the key outside its places: {leak}" for leak in find_leaks([public], elsewhere)]
    counted = Counter(problems)
    assert not problems, f"{sentry_run.mode}: {len(problems)} problems:\n" + "\n".join(
        f"{n} x {problem}" for problem, n in counted.most_common(20)
    )


def test_otlp_exporter_headers_reach_only_the_otlp_receiver(mode_b: Run) -> None:
    """``OTEL_EXPORTER_OTLP_HEADERS`` belongs to the ``otlp`` exporter: every request to the OTLP receiver carries it,
    no request to Sentry (envelopes or its OTLP endpoint) does."""
    assert mode_b.otlp is not None and mode_b.sentry is not None
    expected = mode_b.planting.otlp_headers
    otlp_requests = mode_b.otlp.requests
    assert otlp_requests, "the OTLP receiver got nothing"
    missing = [r.path for r in otlp_requests if any(r.headers.get(k) != v for k, v in expected.items())]
    assert not missing, f"OTLP requests without the configured headers: {missing[:5]}"
    assert mode_b.sentry.otlp_requests(), "Sentry's OTLP endpoint got nothing"
    tokens = [value.removeprefix("Bearer ") for value in expected.values()]
    wrong = [
        f"{r.path}: {name}: {value[:24]}..."
        for r in mode_b.sentry.requests
        for name, value in r.headers.items()
        if name in expected or any(t in value for t in tokens)
    ]
    assert not wrong, f"another collector's credentials went to Sentry: {wrong[:5]}"


def test_no_5xx_for_the_planted_requests(run: Run) -> None:
    """A planted secret is the client's data: no request that carries one is a server fault."""
    errors = {request: status for request, status in run.statuses.items() if status >= 500}
    assert not errors, f"{run.mode}: {errors}"


def test_config_error_lines_mask_secret_values(tmp_path: Path) -> None:
    """A malformed DSN or ``OTEL_EXPORTER_OTLP_HEADERS`` is reported, but its secret value is not printed."""
    dsn_secret, dsn_key, bearer = token(32, HEX), token(32, HEX), token(40)
    cases = {
        "malformed SENTRY_DSN": (
            {"SENTRY_DSN": f"https://{dsn_key}:{dsn_secret}@o1.ingest.example/not-a-project"},
            [Secret("dsn_secret", dsn_secret, "SENTRY_DSN"), Secret("dsn_key", dsn_key, "SENTRY_DSN")],
            "SENTRY_DSN",
        ),
        "malformed OTEL_EXPORTER_OTLP_HEADERS": (
            {"OTEL_EXPORTER_OTLP_HEADERS": f"Authorization: Bearer {bearer}"},
            [Secret("otlp_headers_bearer", bearer, "OTEL_EXPORTER_OTLP_HEADERS")],
            "OTEL_EXPORTER_OTLP_HEADERS",
        ),
    }
    problems = []
    with RecordingOtlpReceiver() as otlp, RecordingSentryReceiver() as sentry:
        for case, (variables, planted, variable) in cases.items():
            port = free_port()
            defaults = {"SENTRY_DSN": sentry.dsn, "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.endpoint}
            env = clean_env(
                OTEL_HAKGAL_CONFIG=str(SENTRY_OTLP_CONFIG), HAKGAL_PORT=str(port), **{**defaults, **variables}
            )
            server = ServerProcess([INSTRUMENT, sys.executable, "-m", "otel_hakgal.demo.api"], env, port)
            try:
                server.wait_ready(timeout_s=60)
                status, _ = server.post_command("status")
            finally:
                output = server.stop()
            if status != 200:
                problems.append(f"{case}: the app answered {status}")
            if variable not in output:
                problems.append(f"{case}: no line names {variable}: {output[-1500:]}")
            stacks = [Haystack("service output", output.encode()), Haystack("otlp bodies", bodies_blob(otlp.requests))]
            problems += [f"{case}: {leak}" for leak in find_leaks(planted, stacks)]
    assert not problems, "\n".join(problems)


def test_closing_note_counts_per_run_mode(
    mode_a: Run, mode_b: Run, mode_c: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's closing note: secrets planted and leaked per run mode (printed; fails if any leaked)."""
    lines = []
    for run in (mode_a, mode_b, mode_c):
        by_where = Counter(leak.where for leak in run.leaks)
        lines.append(f"{run.summary()}; leaks by receiver: {dict(by_where)}")
        five_xx = sum(1 for status in run.statuses.values() if status >= 500)
        lines.append(f"    {len(run.statuses)} planted requests, {five_xx} answered 5xx")
    note = "\n".join(lines)
    with capsys.disabled():
        print("\n" + note)
    assert not any(run.leaks for run in (mode_a, mode_b, mode_c)), note
