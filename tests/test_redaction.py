import re
import secrets
import string
import time

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, Status, StatusCode

import otel_hakgal as hg
from otel_hakgal.config import RedactionSettings, load_config
from otel_hakgal.redaction import REDACTED, SecretScrubber, is_secret_key, redact_text, valid_utf8
from otel_hakgal.testing import OtlpReceiver, TelemetryRecorder


def test_truncates_by_characters_so_utf8_stays_valid() -> None:
    text = "Ist München die Hauptstadt von Bayern? " * 5
    redacted = redact_text(text, RedactionSettings(max_text_length=100))
    assert redacted == text[:100]
    assert redacted is not None and redacted.encode("utf-8").decode("utf-8") == redacted


def test_hash_mode_is_stable_and_hides_the_text() -> None:
    settings = RedactionSettings(text_mode="hash")
    first, second = redact_text("Wer ist Sokrates?", settings), redact_text("Wer ist Sokrates?", settings)
    assert first == second and first is not None
    assert first.startswith("sha256:") and "Sokrates" not in first
    assert redact_text("Wer ist Platon?", settings) != first


def test_omit_mode_records_nothing() -> None:
    assert redact_text("anything", RedactionSettings(text_mode="omit")) is None


# --- secret scrubbing ----------------------------------------------------------


_KEY_CHARS = string.ascii_letters + string.digits
_secret_body = st.text(alphabet=_KEY_CHARS, min_size=12, max_size=48)
# Ordinary text around a secret: anything, including non-ASCII and lone surrogates.
_surrounding = st.text(max_size=40)


@st.composite
def _planted(draw: st.DrawFn) -> tuple[str, str]:
    """(text with a secret in one of the supported shapes, the secret)."""
    body = draw(_secret_body)
    shape = draw(
        st.sampled_from(
            [
                "sk-{s}",
                "Bearer {s}",
                "Authorization: Bearer {s}",
                "{{'authorization': 'Basic {s}=='}}",
                "api_key={s}",
                "X-API-KEY: {s}",
                '"password": "{s}"',
                "password={s}",
                "client_secret={s}",
                "https://{s}@o12345.ingest.sentry.io/42",
                "postgres://hakgal:{s}@db.local/kb",
                "AIza{s}{s}",
                "/maps/api/geocode/json?address=Berlin&key={s}&page=2",
                "https://bucket.example/o?X-Amz-Signature={s}#top",
                "POST /api/v1/sk-{s}/command",
                "my password is {s}",
                "password=Tr0&{s}",
                "db_secret={s};x}}",
            ]
        )
    )
    secret = shape.format(s=body)
    before, after = draw(_surrounding), draw(_surrounding)
    # Neither the surroundings nor the shape's own label ("Authorization") hold another copy of the key.
    assume(body not in before + shape.format(s="") + after)
    return f"{before} {secret} {after}", body


@settings(max_examples=400, deadline=None)
@given(_planted())
def test_a_planted_secret_never_survives(planted: tuple[str, str]) -> None:
    text, secret = planted
    scrubbed = SecretScrubber().scrub(text)
    assert secret not in scrubbed
    scrubbed.encode("utf-8")  # valid UTF-8, always


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(alphabet=_KEY_CHARS, min_size=8, max_size=40))
def test_a_known_literal_never_survives_whatever_surrounds_it(text: str, literal: str) -> None:
    scrubber = SecretScrubber([literal])
    mid = len(text) // 2
    scrubbed = scrubber.scrub(text[:mid] + literal + text[mid:])
    assert literal.lower() not in scrubbed.lower()
    scrubbed.encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_text_comes_back_as_valid_utf8(text: str) -> None:
    SecretScrubber().scrub(text).encode("utf-8")
    valid_utf8(text).encode("utf-8")


def test_ordinary_text_is_left_alone() -> None:
    scrubber = SecretScrubber()
    for text in [
        "ask Is Berlin a city?",
        "gen_ai.usage.input_tokens=12 max_tokens: 256",
        "Basic questions about logic",
        "the bearer of news",
        "https://example.org/path?q=1",
    ]:
        assert scrubber.scrub(text) is text


def test_secrets_the_patterns_found_are_scrubbed_from_derived_copies() -> None:
    scrubber = SecretScrubber()
    assert scrubber.scrub("ask password=hunter2xyz9 is Berlin a city?") == "ask password=[REDACTED] is Berlin a city?"
    # The app derives a formula from the question, changing case: the learned secret still goes.
    assert scrubber.scrub("Aussage(PasswordHunter2xyz9IsBerlinACity).") == f"Aussage(Password{REDACTED}IsBerlinACity)."


def test_derived_copies_match_whatever_the_case_and_separators() -> None:
    scrubber = SecretScrubber()
    assert scrubber.scrub("ask password=hunter2-x is Berlin a city?") == f"ask password={REDACTED} is Berlin a city?"
    for copy, scrubbed in [
        ("Aussage(PasswordHunter2XIsBerlinACity).", f"Aussage(Password{REDACTED}IsBerlinACity)."),
        ("user hunter2_x", f"user {REDACTED}"),
        ("HUNTER2X", REDACTED),
        ("id=hunter2.x!", f"id={REDACTED}!"),
    ]:
        assert scrubber.scrub(copy) == scrubbed


_separated = st.lists(st.text(alphabet=_KEY_CHARS, min_size=1, max_size=8), min_size=1, max_size=5)


@settings(max_examples=100, deadline=None)
@given(_separated, st.data())
def test_any_derived_copy_of_a_found_secret_is_scrubbed(chunks: list[str], data: st.DataObject) -> None:
    """The app may change a secret's case and drop or change its separators: still scrubbed."""
    assume(len("".join(chunks)) >= 8)
    separators = st.sampled_from(["-", "_", ".", "/", "+"])
    found_separators = [data.draw(separators) for _ in chunks[1:]]
    copy_separators = [data.draw(st.sampled_from(["", sep, data.draw(separators)])) for sep in found_separators]
    found = chunks[0] + "".join(sep + c for sep, c in zip(found_separators, chunks[1:], strict=True))
    copy = chunks[0] + "".join(sep + c for sep, c in zip(copy_separators, chunks[1:], strict=True))
    copy = "".join(ch.upper() if data.draw(st.booleans()) else ch.lower() for ch in copy)
    scrubber = SecretScrubber()
    assert scrubber.scrub(f"ask password={found} now") == f"ask password={REDACTED} now"
    scrubbed = scrubber.scrub(f"Aussage(Password{copy}IsKnown).")
    assert re.sub(r"[^a-z0-9]", "", scrubbed.lower()) == "aussagepasswordredactedisknown"


def test_a_short_secret_does_not_redact_words_that_merely_resemble_it() -> None:
    scrubber = SecretScrubber()
    scrubber.scrub("password=lo-gic-al")  # seven letters once the separators go
    assert scrubber.scrub("Logical reasoning") == "Logical reasoning"
    assert scrubber.scrub("key lo-gic-al") == f"key {REDACTED}"  # the exact value still is one


def test_secret_environment_variables_are_scrubbed_as_literals() -> None:
    legacy_secret = secrets.token_hex(16)
    scrubber = SecretScrubber.from_environment(
        {
            "MISTRAL_API_KEY": "abcdefghijklmnop1234",
            "SENTRY_DSN": f"https://{secrets.token_hex(16)}:{legacy_secret}@o1.ingest.sentry.io/2",
            "DATABASE_URL_PASSWORD": "postgres://hakgal:pg-s3cr3t-pw@db.local/kb",
            "UPSTREAM_TOKEN": "Token upstream0tok3n",  # an auth header's value: the credentials alone count too
            "PATH": "/usr/bin:/bin",
            "SHORT_TOKEN": "1",  # too short to be told from ordinary words
        }
    )
    assert scrubber.scrub("HTTP 401: Incorrect API key provided: abcdefghijklmnop1234") == (
        f"HTTP 401: Incorrect API key provided: {REDACTED}"
    )
    assert scrubber.scrub(f"key {legacy_secret} in a log line") == f"key {REDACTED} in a log line"
    assert scrubber.scrub("login as hakgal with pg-s3cr3t-pw") == f"login as hakgal with {REDACTED}"
    assert scrubber.scrub("echo upstream0tok3n") == f"echo {REDACTED}"
    assert scrubber.scrub("/usr/bin:/bin and 1") == "/usr/bin:/bin and 1"


def _random_token(length: int = 32) -> str:
    """A key with no shape a pattern could know (no prefix, letters and digits)."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def test_secret_environment_variables_set_after_the_scrubber_was_built_are_scrubbed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app loads its .env at import, after the launcher's setup() built the scrubber."""
    monkeypatch.delenv("MISTRAL_API_KEY", raising=False)
    scrubber = SecretScrubber.from_environment()  # watches os.environ
    key = _random_token()
    monkeypatch.setenv("MISTRAL_API_KEY", key)
    echo = f"HTTP 401: Incorrect API key provided: {key}. You can find your API key at ..."
    span = _span({"hakgal.query.text": f"what is {key}"}, status=Status(StatusCode.ERROR, echo))
    scrubbed = scrubber.scrub_span(span)
    assert (
        scrubbed.status.description
        == f"HTTP 401: Incorrect API key provided: {REDACTED}. You can find your API key at ..."
    )
    assert scrubbed.attributes is not None and scrubbed.attributes["hakgal.query.text"] == f"what is {REDACTED}"


def test_a_changed_secret_environment_value_is_scrubbed_after_the_refresh_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A changed value leaves the environment's size alone: the periodic re-read finds it."""
    old, new = _random_token(), _random_token()
    monkeypatch.setenv("HAKGAL_DB_PASSWORD", old)
    scrubber = SecretScrubber.from_environment(environ_refresh_s=0.05)
    monkeypatch.setenv("HAKGAL_DB_PASSWORD", new)
    time.sleep(0.1)
    assert scrubber.scrub(f"ask is {new} a city?") == f"ask is {REDACTED} a city?"
    assert scrubber.scrub(f"ask is {old} a city?") == f"ask is {REDACTED} a city?"  # still a secret


def test_a_dsn_and_its_keys_are_secrets_in_span_data() -> None:
    """Sentry needs the public key in every envelope's trace header, and the Sentry backends keep it
    there (tests/backends/test_sentry.py); everywhere else, a captured ``baggage`` header included,
    it is redacted like the DSN's secret part."""
    public, secret_part = secrets.token_hex(16), secrets.token_hex(16)
    dsn = f"https://{public}@o447951.ingest.sentry.io/5428563"
    legacy = f"https://{public}:{secret_part}@sentry.example.com/42"
    config = load_config(overrides={"backends": ["sentry"], "sentry.dsn": dsn}, environ={})
    for scrubber in (
        SecretScrubber.for_config(config, environ={"SENTRY_DSN": legacy}),
        SecretScrubber.from_environment({}, [dsn, legacy]),
    ):
        assert public not in scrubber.scrub(f"init {dsn} ok")
        assert scrubber.scrub(f"init {legacy}") in (
            f"init {REDACTED}",
            f"init https://{REDACTED}@sentry.example.com/42",
        )
        assert scrubber.scrub(f"rejected: {secret_part}") == f"rejected: {REDACTED}"
        baggage = f"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key={public}"
        assert (
            scrubber.scrub(baggage) == f"sentry-trace_id=771a43a4192642f0b136d5159a501700,sentry-public_key={REDACTED}"
        )


def test_a_dsn_typed_into_user_text_is_a_secret_with_its_derived_copies() -> None:
    stranger = secrets.token_hex(16)
    scrubber = SecretScrubber.from_environment({})
    text = f"ask Does https://{stranger}@o1.ingest.example/5 know Rome?"
    assert stranger not in scrubber.scrub(text)
    assert scrubber.scrub(f"Aussage(DoesHttps{stranger.upper()}O1IngestExample5)") == (
        f"Aussage(DoesHttps{REDACTED}O1IngestExample5)"
    )


def test_extra_patterns_from_the_config() -> None:
    scrubber = SecretScrubber(extra_patterns=[r"HG-\d{6}"])
    assert scrubber.scrub("ticket HG-123456 opened") == f"ticket {REDACTED} opened"


def test_keys_that_name_a_secret() -> None:
    assert is_secret_key("http.request.header.authorization")
    assert is_secret_key("http.request.header.x-api-key")
    assert is_secret_key("db.password")
    assert not is_secret_key("gen_ai.usage.input_tokens")
    assert not is_secret_key("hakgal.cache.key")
    assert not is_secret_key("public_key")  # the DSN key Sentry's trace header needs


@pytest.mark.parametrize(
    "name", ["key", "token", "api_key", "apikey", "access_token", "auth", "sig", "signature", "X-Amz-Signature"]
)
def test_secret_query_parameters_are_scrubbed_up_to_the_next_parameter(name: str) -> None:
    scrubber = SecretScrubber()
    value = _random_token(24)
    target = f"/maps/api/geocode/json?address=Berlin&{name}={value}&sensor=false#top"
    assert scrubber.scrub(target) == f"/maps/api/geocode/json?address=Berlin&{name}={REDACTED}&sensor=false#top"
    # Sentry's request.query_string and OTel's url.query have no "?"
    assert scrubber.scrub(f"{name}={value}&page=2") == f"{name}={REDACTED}&page=2"
    assert scrubber.scrub(f"https://maps.example/api?{name}={value}") == f"https://maps.example/api?{name}={REDACTED}"


@pytest.mark.parametrize(
    "text",
    [
        "my password is {s}, please remember it",
        "The password was {s}.",
        "the passphrase is {s}",
        "Mein Passwort ist {s}",
        "Password is: {s}",
        "I set the password to {s} yesterday",
        "my api key is {s}, does it work?",
        "the access token was {s}",
    ],
)
def test_passwords_in_prose_are_scrubbed(text: str) -> None:
    secret = "Tr0ub4dor" + _random_token(6)
    scrubbed = SecretScrubber().scrub(text.format(s=secret))
    assert secret not in scrubbed and REDACTED in scrubbed


def test_messages_about_a_password_are_left_alone() -> None:
    scrubber = SecretScrubber()
    for text in ["password is incorrect", "The password is too short", "password was changed", "password is required"]:
        assert scrubber.scrub(text) is text


def test_a_password_assignment_keeps_its_whole_value() -> None:
    scrubber = SecretScrubber()
    assert scrubber.scrub("login password=Tr0ub4dor&3xyz failed") == f"login password={REDACTED} failed"
    assert scrubber.scrub("db_password: a,b;c}d&e") == f"db_password: {REDACTED}"
    assert scrubber.scrub('{"password": "correct horse battery staple"}') == f'{{"password": "{REDACTED}"}}'
    # ... but a query string or a list of settings goes on after it
    assert scrubber.scrub("?password=abc12345&page=2") == f"?password={REDACTED}&page=2"
    assert scrubber.scrub("password=abc12345, user=bob") == f"password={REDACTED}, user=bob"
    assert scrubber.scrub("{password=abc12345}") == f"{{password={REDACTED}}}"
    assert scrubber.scrub("?api_key=abc&x=1") == f"?api_key={REDACTED}&x=1"
    # after a colon and a space, every word up to the end of the line or sentence
    assert scrubber.scrub("ask wifi password: w1xy w2xy w3xy") == f"ask wifi password: {REDACTED}"
    assert scrubber.scrub("password: abc12345. Is Berlin a city?") == f"password: {REDACTED}. Is Berlin a city?"


def _span(attributes: dict[str, object], events: list[Event] = (), status: Status | None = None) -> ReadableSpan:  # type: ignore[assignment]
    return ReadableSpan("s", attributes=attributes, events=events, status=status or Status(StatusCode.UNSET))  # type: ignore[arg-type]


_LINKED = SpanContext(trace_id=0x5B8AA5A2D2C872E8321CF37308D69DF2, span_id=0x051581BF3CB55C13, is_remote=True)


def test_a_clean_span_passes_through_without_a_copy() -> None:
    span = ReadableSpan(
        "POST /api/command",
        attributes={"http.route": "/api/command", "gen_ai.usage.input_tokens": 12, "tags": ("a", "b")},
        events=[Event("exception", {"exception.message": "ValueError: no such file"})],
        links=[Link(_LINKED, {"link.reason": "retry"})],
        status=Status(StatusCode.ERROR, "ValueError: no such file"),
    )
    assert SecretScrubber(max_length=4096).scrub_span(span) is span


def test_every_string_field_of_a_span_is_scrubbed_and_cut() -> None:
    """Name, status, event names and attributes, link attributes: no secret, nothing over the limit."""
    key = "sk-" + _random_token(40)
    long = "x" * 60_000
    span = ReadableSpan(
        f"POST /api/v1/{key}/command{long}",
        attributes={"http.target": f"/api/v1/{key}/command?key={_random_token()}"},
        events=[
            Event(
                f"exception {long}",
                {"exception.message": f"bad {key} {long}", "exception.stacktrace": f"Traceback\n{key}\n{long}"},
            )
        ],
        links=[Link(_LINKED, {"link.note": f"from {key} {long}", "n": 1})],
        status=Status(StatusCode.ERROR, f"build_kb({long!r}) failed with {key}"),
    )
    scrubbed = SecretScrubber(max_length=100).scrub_span(span)
    strings = [
        scrubbed.name,
        scrubbed.status.description or "",
        *(e.name for e in scrubbed.events),
        *(v for e in scrubbed.events for v in (e.attributes or {}).values()),
        *(v for link in scrubbed.links for v in (link.attributes or {}).values() if isinstance(v, str)),
        *(scrubbed.attributes or {}).values(),
    ]
    assert len(strings) == 7
    assert all(len(s) <= 100 for s in strings)
    assert not any(key[3:20] in s for s in strings)
    assert scrubbed.name.startswith(f"POST /api/v1/{REDACTED}/command")
    assert scrubbed.attributes == {"http.target": f"/api/v1/{REDACTED}/command?key={REDACTED}"}
    assert scrubbed.links[0].context == _LINKED and scrubbed.links[0].attributes is not None
    assert scrubbed.links[0].attributes["n"] == 1
    assert scrubbed.status.status_code is StatusCode.ERROR and scrubbed.context == span.context


def test_nothing_secret_or_unbounded_reaches_an_otlp_receiver(
    otlp_receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the real pipeline: a key set after setup(), keys in a span name and a query, 60 KB strings."""
    otlp_receiver.bodies = []
    limit = 200
    handle = hg.setup(
        backends=["otlp"],
        settings={
            "otlp.endpoint": otlp_receiver.endpoint,
            "otlp.metrics": False,  # every body is a trace request
            "redaction.max_attribute_length": limit,
        },
    )
    env_key, query_key, path_key = _random_token(), _random_token(), "sk-" + _random_token(40)
    try:
        # After setup(), as an app's .env: a new variable, so it counts at once.
        monkeypatch.setenv(f"HAKGAL_PLANTED_{secrets.token_hex(4).upper()}_API_KEY", env_key)
        with trace.get_tracer("someone.else").start_as_current_span(
            f"GET /api/v1/{path_key}/command/{'x' * 60_000}", links=[Link(_LINKED, {"note": f"key {env_key}"})]
        ) as span:
            span.set_attribute("http.target", f"/api/v1/{path_key}/command?key={query_key}&page=2")
            span.add_event(f"retry {'e' * 60_000}", {"reason": f"HTTP 401: Incorrect API key provided: {env_key}"})
            span.set_status(Status(StatusCode.ERROR, f"HTTP 401: Incorrect API key provided: {env_key} {'y' * 60_000}"))
        assert handle.force_flush(10)
    finally:
        handle.shutdown()
    (received,) = otlp_receiver.wait_for_spans(1)
    assert received.name.startswith(f"GET /api/v1/{REDACTED}/command/x")
    assert received.attributes["http.target"] == f"/api/v1/{REDACTED}/command?key={REDACTED}&page=2"
    bodies = otlp_receiver.bodies
    for secret in (env_key, query_key, path_key[3:]):
        assert not any(secret.encode() in body for body in bodies)
    (sent,) = [
        span
        for body in bodies
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    strings = [sent.name, sent.status.message, *(event.name for event in sent.events)]
    for pairs in (sent.attributes, *(e.attributes for e in sent.events), *(link.attributes for link in sent.links)):
        strings += [pair.value.string_value for pair in pairs]
    assert len(strings) == 6 and max(map(len, strings)) == limit


def test_a_span_is_scrubbed_in_attributes_events_and_status() -> None:
    error = "HTTP 401: Incorrect API key provided: sk-abcdefghijklmnopqrstuvwx"
    span = _span(
        {"http.request.header.authorization": ("Bearer abc",), "url.query": "api_key=s3cr3tvalue&x=1", "n": 3},
        [Event("exception", {"exception.message": error, "exception.stacktrace": f"Traceback...\n{error}"})],
        Status(StatusCode.ERROR, error),
    )
    scrubbed = SecretScrubber().scrub_span(span)
    text = repr((dict(scrubbed.attributes or {}), [dict(e.attributes or {}) for e in scrubbed.events]))
    text += scrubbed.status.description or ""
    assert not re.search(r"abcdefghijklmnop|s3cr3tvalue|Bearer abc", text)
    assert scrubbed.attributes is not None and scrubbed.attributes["n"] == 3
    assert scrubbed.attributes["http.request.header.authorization"] == (REDACTED,)
    assert scrubbed.status.status_code is StatusCode.ERROR and scrubbed.name == span.name


def test_sentry_events_are_scrubbed_in_place() -> None:
    event = {
        "exception": {"values": [{"value": "password=hunter2xyz rejected"}]},
        "request": {"headers": {"Authorization": "Bearer tok123456"}, "query_string": "token=abcdefgh123"},
        "breadcrumbs": {"values": [{"message": "GET https://user:pw123456@host/x"}]},
        "level": "error",
    }
    text = repr(SecretScrubber().scrub_data(event))
    assert not re.search(r"hunter2xyz|tok123456|abcdefgh123|pw123456", text)
    assert event["level"] == "error"


def test_the_one_length_cut_never_leaves_part_of_a_secret(hakgal_telemetry: TelemetryRecorder) -> None:
    """Strings are cut once, after secrets are replaced: a key across the cut is gone, not half kept."""
    key = "sk-" + "a1B2c3D4e5F6g7H8i9J0" * 2
    limit = 4096  # redaction.max_attribute_length's default
    value = "x" * (limit - 10) + " " + key + " " + "y" * 10_000_000  # the key straddles the cut; 10 MB after
    with hg.step("hakgal.parse", attributes={"app.payload": value}):
        pass
    kept = hakgal_telemetry.span("hakgal.parse").attributes["app.payload"]
    assert len(kept) == limit and kept.startswith("x" * (limit - 10) + " [REDAC")
    assert "sk-" not in kept and "a1B2" not in kept


def test_log_lines_scrubbed_without_remembering_leave_the_clean_span_values_cached() -> None:
    """Log paths pass ``remember=False``: 5,000 unique lines must not push the repeating span values out."""
    scrubber = SecretScrubber(max_length=4096)  # always an int at runtime: the path through the cut
    assert scrubber.scrub_attributes({"http.route": "/ask", "model": "gpt-x"}) is None
    cached = set(scrubber._clean)  # a performance property: no public view of the cache
    assert {"/ask", "gpt-x"} <= cached
    for index in range(5_000):
        line = f"request {index} answered in {index * 7} ms"
        assert scrubber.scrub(line, remember=False) == line
        assert scrubber.scrub_value("log.body", line, remember=False) == line
        assert scrubber.scrub_attributes({"detail": line, "nested": [line]}, remember=False) is None
    assert scrubber._clean == cached
    # A secret in a line that is not remembered is still scrubbed.
    assert scrubber.scrub_value("log.body", "password=hunter2hunter2", remember=False) == "password=[REDACTED]"
