"""A client's mistake is a 4xx with a clear message, recorded as a command that was rejected, never as an error.

Issue 14, item 8: ``build_kb`` with a missing file, a path, ``.``, a NUL byte
or a 60 KB name answered 500 and filed a Sentry error event each time. Now
only a server fault (here: a damaged data file on the server) is a 500 with
an error event. Every verb is also tried with hostile arguments: none of them
gets a 5xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import otel_hakgal as hg
from otel_hakgal.conventions import Attr, ErrorType, Outcome, SpanName
from otel_hakgal.demo.api import create_app
from otel_hakgal.demo.commands import known_verbs
from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.simulator import LLMSimulator
from otel_hakgal.demo.workload import post_command
from otel_hakgal.testing import SentryReceiver, TelemetryRecorder

from .conftest import FAST_SETTINGS, serve, wait_for

# (argument of build_kb, expected status, a phrase of the message)
BUILD_KB_MISTAKES: dict[str, tuple[str, int, str]] = {
    "missing-file": ("missing.txt", 404, "no data file 'missing.txt'; the data directory has corpus.txt"),
    "path-traversal": ("../../etc/passwd", 400, "not a path"),
    "absolute-path": ("/etc/passwd", 400, "not a path"),
    "dot": (".", 400, "not a path"),
    "nul-byte": ("corpus.txt\x00", 400, "control characters"),
    "lone-surrogate": ("\ud800 x", 400, "control characters or invalid text"),
    "60kb-name": ("n" * 60_000, 400, "longer than 255 bytes"),
}


def command_spans(recorder: TelemetryRecorder) -> list[object]:
    return [s for s in recorder.spans() if s.name.startswith("hakgal.command")]


@pytest.mark.parametrize("case", list(BUILD_KB_MISTAKES))
def test_a_bad_build_kb_name_is_a_4xx_and_a_rejected_command(
    api_url: str, hakgal_telemetry: TelemetryRecorder, case: str
) -> None:
    name, expected_status, phrase = BUILD_KB_MISTAKES[case]

    status, body = post_command(api_url, f"build_kb {name}")

    assert status == expected_status, body
    assert body["status"] == "error" and phrase in str(body["error"]), body
    assert len(str(body["error"])) < 300, "the message shows the name cut"
    wait_for(hakgal_telemetry, lambda spans: any(s.kind is SpanKind.SERVER for s in spans))
    command = hakgal_telemetry.span("hakgal.command build_kb")
    assert command.attributes[Attr.COMMAND_OUTCOME] == Outcome.REJECTED
    assert command.status.status_code is StatusCode.UNSET
    assert Attr.ERROR_TYPE not in command.attributes
    assert not command.events, "no exception recorded: error backends file nothing"
    server = next(s for s in hakgal_telemetry.spans() if s.kind is SpanKind.SERVER)
    assert server.status.status_code is not StatusCode.ERROR  # a 4xx is not a server error (HTTP conventions)
    assert not [s for s in hakgal_telemetry.spans() if s.status.status_code is StatusCode.ERROR]
    rejected = {Attr.COMMAND_NAME: "build_kb", Attr.COMMAND_OUTCOME: Outcome.REJECTED}
    assert hakgal_telemetry.histogram_count("hakgal.command.duration", rejected) == 1
    assert not hakgal_telemetry.metric_points("hakgal.errors"), "not counted as an error"


@pytest.mark.parametrize("verb", ["parse", "add_raw", "retract"])
def test_a_formula_nested_too_deeply_is_refused_by_the_firewall_not_a_500(api_url: str, verb: str) -> None:
    status, body = post_command(api_url, f"{verb} " + "-" * 30_000 + "IstStadt(Rom).")
    assert status == 200, body
    assert "nested deeper than 100 levels" in str(body["chatResponse"])


HOSTILE_ARGUMENTS = (
    "",
    ".",
    "../../etc/passwd",
    "a\x00b",
    "\ud800\udfff",
    "\u202e\x1b[2J",
    "(" * 5_000,
    "-" * 20_000 + "P(a).",
    "all x " * 3_000,
    "P(a) & " * 4_000 + "P(a).",
    "x" * 30_000,
    "%s%n{}",
)


def test_no_verb_answers_a_hostile_argument_with_a_5xx(hakgal_telemetry: TelemetryRecorder) -> None:
    # The audit behind item 8, over real HTTP; only a fault of the server may answer 500.
    with LLMSimulator() as simulator:
        assistant = KAssistant.create(Endpoints.on(simulator.base_url), FAST_SETTINGS)
        base_url, stop = serve(create_app(assistant))
        try:
            answers = {
                (verb, argument[:12]): post_command(base_url, f"{verb} {argument}")[0]
                for verb in [*known_verbs(), "frobnicate"]
                for argument in HOSTILE_ARGUMENTS
            }
        finally:
            stop()
    assert {key: status for key, status in answers.items() if status >= 500} == {}
    assert set(answers.values()) <= {200, 400, 404}


@pytest.fixture
def sentry_service(sentry_receiver: SentryReceiver) -> Iterator[tuple[str, hg.Handle]]:
    handle = hg.setup(backends=["sentry"], settings={"sentry.dsn": sentry_receiver.dsn})
    try:
        with LLMSimulator() as simulator:
            assistant = KAssistant.create(Endpoints.on(simulator.base_url), AssistantSettings(z3_timeout_s=0.3))
            base_url, stop = serve(create_app(assistant))
            try:
                yield base_url, handle
            finally:
                stop()
    finally:
        handle.shutdown()


def test_client_mistakes_file_no_error_event_only_a_server_fault_does(
    sentry_service: tuple[str, hg.Handle], sentry_receiver: SentryReceiver
) -> None:
    base_url, handle = sentry_service
    mistakes = [f"build_kb {name}" for name, _, _ in BUILD_KB_MISTAKES.values()] + ["frobnicate now"]
    statuses = [post_command(base_url, command)[0] for command in mistakes]
    assert statuses == [status for _, status, _ in BUILD_KB_MISTAKES.values()] + [200]
    handle.force_flush(10)
    sentry_receiver.wait_for("transaction", count=len(mistakes))
    assert sentry_receiver.errors() == [], "a client can no longer burn the error quota"

    assert post_command(base_url, "build_kb damaged.hkb")[0] == 500  # the control: a fault of the server
    handle.force_flush(10)
    [error] = sentry_receiver.wait_for("event")
    assert json.dumps(error).count("UnicodeDecodeError") >= 1
    commands = [t for t in sentry_receiver.transactions() if t["transaction"] == "POST /api/command"]
    assert len(commands) == len(mistakes) + 1
    assert sorted(t["tags"].get(Attr.COMMAND_OUTCOME) for t in commands).count(Outcome.REJECTED) == len(mistakes)


def test_span_names_used_here_are_the_conventions() -> None:
    assert SpanName.COMMAND.format(verb=ErrorType.OTHER) == "hakgal.command _OTHER"
    assert Outcome.REJECTED == "rejected"
