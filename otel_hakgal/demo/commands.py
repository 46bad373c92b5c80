"""Command dispatch: each verb runs in a worker thread with a timeout, under one command span.

As in HAK-GAL, a command that times out is answered at once while its thread
runs on. Its span ends then, marked ``error.type = timeout``; spans the
thread still opens stay in the same trace.

Every command gets a span, an unknown verb too (``hakgal.command _OTHER``:
verbs are a closed set). A client's mistake, an unknown verb or a bad
argument (:class:`~otel_hakgal.demo.k_assistant.ClientMistake`), ends with
outcome ``rejected``: no error status, no exception, no error event. Only a
server fault ends with outcome ``error``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import otel_hakgal as hg
from otel_hakgal.conventions import ErrorType, Outcome
from otel_hakgal.demo.k_assistant import ClientMistake, KAssistant, Reply
from otel_hakgal.demo.peer import Peer

logger = logging.getLogger(__name__)

Handler = Callable[[KAssistant, str], Reply]

VERBS: dict[str, tuple[Handler, str]] = {
    "ask": (lambda a, text: a.ask(text), "ask <question>: answer a question with the provers"),
    "explain": (lambda a, text: a.explain(text), "explain <question>: answer and explain"),
    "add_raw": (lambda a, text: a.add_raw(text), "add_raw <fact>: add a fact in HAK-GAL syntax"),
    "retract": (lambda a, text: a.retract(text), "retract <fact>: remove a fact"),
    "learn": (lambda a, text: a.learn(text), "learn [text]: add the learning suggestions (and facts in text)"),
    "show": (lambda a, text: a.show(), "show: list the knowledge base"),
    "status": (lambda a, text: a.status(), "status: knowledge base, caches and providers"),
    "parse": (lambda a, text: a.parse(text), "parse <formula>: check a formula with the logic firewall"),
    "what_is": (lambda a, text: a.what_is(text), "what_is <entity>: facts about an entity"),
    "search": (lambda a, text: a.search(text), "search <text>: passages of the text corpus"),
    "clearcache": (lambda a, text: a.clear_cache(), "clearcache: empty the proof and prompt caches"),
    "build_kb": (lambda a, text: a.build_kb(text), "build_kb <file>: add facts from a data file"),
    "help": (lambda a, text: Reply(help_text()), "help: this list"),
}

# HAK-GAL's timeouts: 30 s by default, longer for questions and KB builds.
DEFAULT_TIMEOUT_S = 30.0
VERB_TIMEOUTS_S: dict[str, float] = {"ask": 60.0, "explain": 90.0, "build_kb": 120.0}


def help_text() -> str:
    return "Commands:\n" + "\n".join(f"  {description}" for _, description in VERBS.values())


class Status(StrEnum):
    SUCCESS = "success"
    ERROR = "error"
    TIMEOUT = "timeout"
    REJECTED = "rejected"  # the client's mistake: a 4xx
    UNKNOWN_COMMAND = "unknown_command"


@dataclass
class CommandResult:
    verb: str
    status: Status
    reply: Reply | None = None
    error: str | None = None
    timeout_s: float | None = None
    http_status: int | None = None  # for REJECTED: 400 or 404


class _Command(hg.CommandOp):
    """``hg.command`` that can also end ``rejected``: outcome recorded, span status and error count left alone.

    The layer's ``CommandOp`` ends only as success, error or timeout, and its
    ``fail()`` marks the span as an error; ``reject()`` belongs there.
    """

    __slots__ = ("_rejected",)

    def __init__(self, verb: str, *, text: str | None = None, timeout_s: float | None = None) -> None:
        super().__init__(verb, text=text, timeout_s=timeout_s)
        self._rejected = False

    def reject(self) -> None:
        """End as ``rejected``: the client's mistake, not the server's error."""
        self._rejected = True

    @property
    def outcome(self) -> Outcome:
        if self._rejected and not self.failed:
            return Outcome.REJECTED
        return super().outcome


@dataclass
class Timeouts:
    default_s: float = DEFAULT_TIMEOUT_S
    per_verb_s: Mapping[str, float] = field(default_factory=lambda: dict(VERB_TIMEOUTS_S))

    def for_verb(self, verb: str) -> float:
        return self.per_verb_s.get(verb, self.default_s)

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, float] | None) -> Timeouts:
        """HAK-GAL's timeouts, with ``overrides`` by verb (the key ``"default"`` sets the rest)."""
        overrides = dict(overrides or {})
        default = overrides.pop("default", DEFAULT_TIMEOUT_S)
        return cls(default, {**VERB_TIMEOUTS_S, **overrides})


def split_command(command: str) -> tuple[str, str]:
    """``"ask What is ..."`` -> ``("ask", "What is ...")``; the verb is lower-cased."""
    verb, _, rest = command.strip().partition(" ")
    return verb.lower(), rest.strip()


class CommandRunner:
    def __init__(
        self,
        assistant_factory: Callable[[], KAssistant],
        timeouts: Timeouts | None = None,
        peer: Peer | None = None,
    ) -> None:
        """``peer``: the verbs it delegates run there, under this process's command span (see ``demo.peer``)."""
        self._assistant = assistant_factory
        self.timeouts = timeouts or Timeouts()
        self.peer = peer

    def run(self, verb: str, text: str) -> CommandResult:
        """Run ``verb`` in a worker thread; never raises. An unknown verb is recorded and rejected."""
        if verb not in VERBS:
            return self._unknown(verb, text)
        handler, _ = VERBS[verb]
        timeout_s = self.timeouts.for_verb(verb)
        outcome: dict[str, Reply | Exception] = {}
        peer = self.peer if self.peer is not None and self.peer.delegates(verb) else None

        def work() -> None:
            try:
                outcome["reply"] = peer.run(f"{verb} {text}".strip()) if peer else handler(self._assistant(), text)
            except Exception as error:  # handed to the request thread, which reports it
                outcome["error"] = error

        try:
            with _Command(verb, text=text or None, timeout_s=timeout_s) as command:
                worker = hg.start_thread(work, name=f"command-{verb}")
                worker.join(timeout_s)
                if worker.is_alive():
                    command.fail(ErrorType.TIMEOUT, f"{verb} did not finish within {timeout_s:g} s")
                    logger.warning("command %s timed out after %g s; it keeps running", verb, timeout_s)
                    return CommandResult(verb, Status.TIMEOUT, timeout_s=timeout_s)
                error = outcome.get("error")
                if isinstance(error, ClientMistake):  # no exception on the span: error backends file nothing
                    command.reject()
                    return CommandResult(verb, Status.REJECTED, error=str(error), http_status=error.http_status)
                if isinstance(error, Exception):
                    raise error  # recorded on the command span (status ERROR, error.type = class name)
                reply = outcome["reply"]
                assert isinstance(reply, Reply)
                return CommandResult(verb, Status.SUCCESS, reply)
        except Exception as error:
            logger.warning("command %s failed: %s", verb, error)  # the traceback is on the command span
            hg.capture_exception(error)  # the seed's handle_command_error: error backends get it, linked to its span
            return CommandResult(verb, Status.ERROR, error=f"{type(error).__name__}: {error}")

    def _unknown(self, verb: str, text: str) -> CommandResult:
        # The verb is the client's free text: the span and metrics name it _OTHER; the whole command is the text.
        command_text = f"{verb} {text}" if text else verb
        with _Command(ErrorType.OTHER, text=command_text) as command:
            command.reject()
        return CommandResult(verb, Status.UNKNOWN_COMMAND)


def known_verbs() -> list[str]:
    return list(VERBS)


__all__ = ["VERBS", "CommandResult", "CommandRunner", "Status", "Timeouts", "help_text", "known_verbs", "split_command"]
