"""HAK-GAL's HTTP API: ``GET /api/test`` and ``POST /api/command``.

``app`` works under any WSGI server (``gunicorn otel_hakgal.demo.api:app``).
Without ``HAKGAL_LLM_BASE_URL`` the app starts the embedded LLM simulator on a
free loopback port, once per process, at the first request. The module does
not configure telemetry: the launcher, ``python -m otel_hakgal.demo.api`` or
the demo runner calls ``otel_hakgal.setup()``.

``POST /api/command`` takes ``{"command": "<verb> <args>"}`` as UTF-8 JSON of
at most ``MAX_BODY_BYTES`` (64 KiB, so a command has fewer than 65,536
characters). Any other body (larger, not UTF-8, not JSON, nested deeper than
the parser allows, not an object, no string command) gets a 400 with a JSON
``{"status": "error", "error": ...}``.

Answers to a command: 200 with the reply; for an unknown verb, 200 with
``{"status": "unknown_command", "validCommands": [...]}``; for an argument
the verb cannot take (``build_kb ../x``), 400, and for a data file that does
not exist, 404, both with ``{"status": "error", "error": ...}``; 504 when
the command timed out; 500 only for a fault of the server. Client mistakes
are recorded as commands with outcome ``rejected``: no error event.

With ``HAKGAL_PEER_URL`` (and optionally ``HAKGAL_PEER_VERBS``) set, commands
are run by that peer HAK-GAL, in the same trace (:mod:`otel_hakgal.demo.peer`).

``python -m otel_hakgal.demo.api`` stops gracefully on SIGTERM or Ctrl-C: no
new connections, the requests in flight are answered (up to
``--drain-timeout`` seconds), then telemetry is flushed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from dotenv import load_dotenv
from flask import Flask, Response, jsonify, request

import otel_hakgal as hg
from otel_hakgal.demo.commands import CommandResult, CommandRunner, Status, Timeouts, known_verbs, split_command
from otel_hakgal.demo.k_assistant import AssistantSettings, KAssistant
from otel_hakgal.demo.peer import Peer
from otel_hakgal.demo.providers import Endpoints
from otel_hakgal.demo.serving import DEFAULT_DRAIN_TIMEOUT_S, DrainingServer, serve_until_stopped
from otel_hakgal.demo.simulator import LLMSimulator
from otel_hakgal.log_redaction import CORRELATION_DEFAULTS

LLM_BASE_URL_ENV = "HAKGAL_LLM_BASE_URL"
PORT_ENV = "HAKGAL_PORT"
DEFAULT_PORT = 5001
MAX_BODY_BYTES = 64 * 1024

logger = logging.getLogger(__name__)

# The service's log line: the trace and span ids lead to the request's trace ("0" outside a span).
LOG_FORMAT = "%(levelname)s %(name)s trace_id=%(otelTraceID)s span_id=%(otelSpanID)s: %(message)s"


def configure_logging(level: int) -> None:
    """Log to stderr in :data:`LOG_FORMAT`; records made before ``setup()`` show ids of 0."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, defaults=CORRELATION_DEFAULTS))
    logging.basicConfig(level=level, handlers=[handler])


# As HAK-GAL does: provider keys come from a .env at import, after the launcher's setup() ran.
# Variables already set win; ``HAKGAL_ENV_FILE`` names another file.
load_dotenv(os.environ.get("HAKGAL_ENV_FILE") or ".env", override=False)


# --- the assistant behind the app -------------------------------------------------------


class _EmbeddedSimulator:
    """The simulator this process started, if any (one per process, also after a fork)."""

    lock = threading.Lock()
    instance: LLMSimulator | None = None
    pid: int | None = None

    @classmethod
    def base_url(cls) -> str:
        with cls.lock:
            if cls.instance is None or cls.pid != os.getpid():
                cls.instance, cls.pid = LLMSimulator().start(), os.getpid()
                cls.instance.apply_env_faults()  # e.g. HAKGAL_SIM_FAULT=error: every LLM call fails
                logger.info("started the embedded LLM simulator at %s", cls.instance.base_url)
            return cls.instance.base_url


def default_assistant() -> KAssistant:
    """The shipped assistant, on ``$HAKGAL_LLM_BASE_URL`` or on the embedded simulator."""
    base_url = os.environ.get(LLM_BASE_URL_ENV) or _EmbeddedSimulator.base_url()
    return KAssistant.create(Endpoints.on(base_url), AssistantSettings())


class _LazyAssistant:
    """Builds the assistant at first use: importing the module must not start threads."""

    def __init__(self, factory: Callable[[], KAssistant]) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._assistant: KAssistant | None = None

    def __call__(self) -> KAssistant:
        with self._lock:
            if self._assistant is None:
                self._assistant = self._factory()
            return self._assistant


# --- request validation -----------------------------------------------------------------


class BadRequest(Exception):
    pass


_JSON_KINDS: dict[type, str] = {
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _command_from_request() -> str:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise BadRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest(f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8") from None
    try:
        payload = json.loads(text)
    except ValueError:
        raise BadRequest('request body is not JSON; send {"command": "<verb> <args>"}') from None
    except RecursionError:  # e.g. [[[[...]]]] 10,000 deep: the C decoder gives up, the request is bad
        raise BadRequest("request body is JSON nested too deeply") from None
    if not isinstance(payload, dict):
        kind = _JSON_KINDS.get(type(payload), type(payload).__name__)
        raise BadRequest(
            f'request body is a JSON {kind}, not an object: missing "command"; send {{"command": "<verb> <args>"}}'
        )
    if "command" not in payload:
        raise BadRequest('missing "command"; send {"command": "<verb> <args>"}')
    command = payload["command"]
    if not isinstance(command, str):
        raise BadRequest('"command" must be a string')
    if not command.strip():
        raise BadRequest('"command" is empty')
    return command


# --- responses --------------------------------------------------------------------------


def _success_payload(assistant: KAssistant, command: str, result: CommandResult) -> dict[str, Any]:
    assert result.reply is not None
    return {
        "chatResponse": result.reply.chat_response,
        "permanentKnowledge": assistant.kb.texts(),
        "learningSuggestions": assistant.learning_suggestions(),
        "ragContext": result.reply.rag_context,
        "dataSources": result.reply.data_sources,
        "llmStatus": assistant.chain.status(),
        "performanceMetrics": assistant.performance_metrics(),
        "status": Status.SUCCESS.value,
        "lastCommand": command,
    }


def _result_response(assistant: Callable[[], KAssistant], command: str, result: CommandResult) -> tuple[Response, int]:
    if result.status is Status.SUCCESS:
        return jsonify(_success_payload(assistant(), command, result)), 200
    if result.status is Status.UNKNOWN_COMMAND:  # HAK-GAL's contract: 200 and the list of verbs
        body = {
            "status": Status.UNKNOWN_COMMAND.value,
            "chatResponse": f"Unknown command {result.verb!r}. Valid commands: {', '.join(known_verbs())}.",
            "validCommands": known_verbs(),
            "lastCommand": command,
        }
        return jsonify(body), 200
    if result.status is Status.REJECTED:  # the client's mistake: its 4xx, and what to change
        message = str(result.error)
        body = {"status": "error", "error": message, "chatResponse": message, "lastCommand": command}
        return jsonify(body), result.http_status or 400
    if result.status is Status.TIMEOUT:
        message = f"Command '{result.verb}' timed out after {result.timeout_s:g} s; it keeps running in the background."
        body = {"status": Status.TIMEOUT.value, "error": message, "chatResponse": message, "lastCommand": command}
        return jsonify(body), 504
    message = f"Command '{result.verb}' failed: {result.error}"
    return jsonify({"status": "error", "error": message, "chatResponse": message, "lastCommand": command}), 500


# --- the app ----------------------------------------------------------------------------


def create_app(
    assistant: KAssistant | Callable[[], KAssistant] | None = None,
    *,
    timeouts: Mapping[str, float] | None = None,
    peer: Peer | None = None,
) -> Flask:
    """The Flask app around ``assistant`` (default: built at first request, see module doc).

    ``timeouts`` overrides command timeouts by verb (``{"ask": 0.5, "default": 5}``). ``peer``: another
    HAK-GAL that runs the verbs it delegates (default: ``$HAKGAL_PEER_URL``, see :mod:`otel_hakgal.demo.peer`).
    """
    if isinstance(assistant, KAssistant):
        ready = assistant
        get_assistant: Callable[[], KAssistant] = lambda: ready  # noqa: E731
    else:
        get_assistant = _LazyAssistant(assistant or default_assistant)
    runner = CommandRunner(get_assistant, Timeouts.with_overrides(timeouts), peer or Peer.from_env())

    app = Flask("hakgal_demo")
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.get("/api/test")
    def api_test() -> Response:
        get_assistant()
        return jsonify({"status": "ok", "backend_ready": True, "message": "HAK-GAL demo backend is running"})

    @app.post("/api/command")
    def api_command() -> tuple[Response, int]:
        try:
            command = _command_from_request()
        except BadRequest as error:
            response = jsonify({"status": "error", "error": str(error)})
            # The rest of a refused body is never read: ask the client to close (werkzeug does; gunicorn drains it).
            response.headers["Connection"] = "close"
            return response, 400
        verb, text = split_command(command)
        return _result_response(get_assistant, command, runner.run(verb, text))

    app.extensions["hakgal_runner"] = runner
    hg.instrument_flask(app)
    return app


app = create_app()


# --- python -m otel_hakgal.demo.api ------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m otel_hakgal.demo.api", description="Serve the HAK-GAL demo API on 127.0.0.1."
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get(PORT_ENV, DEFAULT_PORT)), help=f"default: ${PORT_ENV} or 5001"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        metavar="SECONDS",
        help=f"on SIGTERM or Ctrl-C, how long requests in flight may take (default {DEFAULT_DRAIN_TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    configure_logging(logging.INFO)
    handle = hg.setup()  # configuration from $OTEL_HAKGAL_CONFIG and the environment
    try:
        server = DrainingServer("127.0.0.1", args.port, app)
        ready = f"HAK-GAL demo API on http://127.0.0.1:{server.server_port} (Ctrl-C or SIGTERM stops)"
        serve_until_stopped(server, drain_timeout_s=args.drain_timeout, on_ready=lambda: print(ready, flush=True))
    finally:
        handle.shutdown()  # after the drain: the spans of every answered request have ended
    return 0


if __name__ == "__main__":
    sys.exit(main())
