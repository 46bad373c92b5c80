"""User text in telemetry: every value derived from what a user typed follows ``redaction.text_mode``.

Command text, question text and the formula built from them are user data
(:data:`USER_TEXT_ATTRIBUTES`). The API records them through one helper,
which applies :func:`~otel_hakgal.redaction.redact_text` (cut after
scrubbing, hash, or omit) and remembers each text whose recorded form differs
from what was typed. When an operation then records an error (an exception,
or a failure message), :class:`TextMask` replaces every occurrence of those
texts in the exception message, stack trace and status description with the
form the attribute got: the cut text, the hash, or :data:`OMITTED`.

The pairs (typed text -> recorded form) are also noted on the exception
itself, like :mod:`otel_hakgal.escapes` notes spans, so whoever reports the
exception later (``hg.capture_exception``, an error backend) can apply the
same mask with :func:`user_text_mask`. Kept apart from the API so backends
need not import it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final, Protocol

from otel_hakgal.conventions import Attr

# What an omitted text is replaced by where it appears in an error message or stack trace.
OMITTED: Final = "[TEXT]"

# Attributes whose value is user text (or derived from it one to one, like the formula of a question).
USER_TEXT_ATTRIBUTES: Final = frozenset({Attr.COMMAND_TEXT, Attr.QUERY_TEXT, Attr.QUERY_FORMULA})

_HIDDEN: Final = "_otel_hakgal_hidden_texts"
# A logging.LogRecord field: the noted texts of its arguments' exceptions, kept when its arguments were replaced.
LOGGED_HIDDEN_KEY: Final = "_otel_hakgal_logged_hidden_texts"
# Shorter texts are not masked: they leak almost nothing, and replacing "ab" would wreck a stack trace.
_MIN_MASKED: Final = 3
# Texts shorter than this are masked only as whole words, not inside longer identifiers.
_WORD_BOUNDED_BELOW: Final = 8
_MAX_CHAIN: Final = 16  # chained exceptions looked at for notes; traceback prints about as many


class TextMask:
    """Replaces typed texts with their recorded forms in error text; one pass, longest text first.

    Each text is also matched in its ``repr`` form (how ``f"{name!r}"`` puts it in
    a message), so backslashes, newlines and NUL bytes do not hide it. Plain
    ``str.find``, no regular expression: compiling a 60 KB literal would cost
    0.1 s per error. A replacement is never searched again, so a short text that
    happens to occur in a hash or in :data:`OMITTED` stays as it is.
    """

    __slots__ = ("_needles",)

    def __init__(self, hidden: Mapping[str, str]) -> None:
        needles: dict[str, str] = {}
        for typed, shown in hidden.items():
            if len(typed) < _MIN_MASKED or typed == shown:
                continue
            needles.setdefault(typed, shown)
            needles.setdefault(repr(typed)[1:-1], repr(shown)[1:-1])  # escaped text: escaped replacement
        self._needles = sorted(needles.items(), key=lambda item: len(item[0]), reverse=True)

    def __bool__(self) -> bool:
        return bool(self._needles)

    def merged(self, other: TextMask | None) -> TextMask:
        """One mask replacing the texts of both (one pass: a replacement is never searched again)."""
        if other is None or not other._needles:
            return self
        if not self._needles:
            return other
        needles = dict(self._needles)
        for needle, shown in other._needles:
            needles.setdefault(needle, shown)
        mask = TextMask({})
        mask._needles = sorted(needles.items(), key=lambda item: len(item[0]), reverse=True)
        return mask

    def __call__(self, text: str) -> str:
        """``text`` with every typed text replaced; the same object when none occurs."""
        if not any(needle in text for needle, _ in self._needles):
            return text
        # Pieces still to search (str) and replacements already made (1-tuples, never searched again).
        pieces: list[str | tuple[str]] = [text]
        for needle, shown in self._needles:
            bounded = len(needle) < _WORD_BOUNDED_BELOW
            split: list[str | tuple[str]] = []
            for piece in pieces:
                if isinstance(piece, tuple) or needle not in piece:
                    split.append(piece)
                else:
                    split.extend(_replace(piece, needle, shown, bounded))
            pieces = split
        return "".join(piece if isinstance(piece, str) else piece[0] for piece in pieces)


def _replace(text: str, needle: str, shown: str, bounded: bool) -> list[str | tuple[str]]:
    pieces: list[str | tuple[str]] = []
    done = 0  # text[:done] is in pieces
    start = text.find(needle)
    while start >= 0:
        end = start + len(needle)
        if bounded and not _whole_word(text, start, end):
            start = text.find(needle, start + 1)
            continue
        pieces += [text[done:start], (shown,)]
        done = end
        start = text.find(needle, end)
    pieces.append(text[done:])
    return pieces


def _whole_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is not part of a longer word (edges that are not word characters always are)."""
    before = text[start - 1 : start]
    after = text[end : end + 1]
    glued_before = before.isalnum() or before == "_"
    glued_after = after.isalnum() or after == "_"
    first, last = text[start], text[end - 1]
    return not (glued_before and (first.isalnum() or first == "_")) and not (
        glued_after and (last.isalnum() or last == "_")
    )


def note_hidden(error: BaseException, hidden: Mapping[str, str]) -> None:
    """Remember on ``error`` the typed texts of the operations it was raised through."""
    with contextlib.suppress(Exception):  # an exception type that refuses attributes keeps no note
        error.__dict__.setdefault(_HIDDEN, {}).update(hidden)


def hidden_texts(error: BaseException) -> dict[str, str]:
    """The typed texts noted on ``error`` and the exceptions it chains (typed -> recorded form); empty if none.

    The chained ones count because a stack trace prints their messages too (``raise ... from error``).
    """
    hidden: dict[str, str] = {}
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < _MAX_CHAIN:
        seen.add(id(current))
        noted = getattr(current, "__dict__", {}).get(_HIDDEN)
        if isinstance(noted, dict):
            for typed, shown in noted.items():
                hidden.setdefault(typed, shown)
        current = current.__cause__ or current.__context__
    return hidden


def logged_hidden_texts(record: Any) -> dict[str, str]:
    """The typed texts noted on the exceptions a ``logging.LogRecord`` carries; empty if none.

    A failure is often logged after its operation ended and without ``exc_info``
    (``logger.warning("%s failed: %s", verb, error)``): the message then holds the
    exception's text, so the exceptions among the record's arguments count as well
    as its ``exc_info``, and those kept when :mod:`otel_hakgal.log_redaction`
    replaced the arguments with the scrubbed message.
    """
    fields = getattr(record, "__dict__", None)
    if not isinstance(fields, dict):
        return {}
    kept = fields.get(LOGGED_HIDDEN_KEY)
    hidden = arguments_hidden_texts(fields.get("args"))
    exc_info = fields.get("exc_info")
    if isinstance(exc_info, tuple) and len(exc_info) > 1 and isinstance(exc_info[1], BaseException):
        for typed, shown in hidden_texts(exc_info[1]).items():
            hidden.setdefault(typed, shown)
    if isinstance(kept, dict):
        for typed, shown in kept.items():
            hidden.setdefault(typed, shown)
    return hidden


def arguments_hidden_texts(args: Any) -> dict[str, str]:
    """The typed texts noted on the exceptions among a log record's ``args`` (a tuple or a mapping)."""
    values: Any = args.values() if isinstance(args, Mapping) else args if isinstance(args, tuple | list) else (args,)
    hidden: dict[str, str] = {}
    for value in values:
        if isinstance(value, BaseException):
            for typed, shown in hidden_texts(value).items():
                hidden.setdefault(typed, shown)
    return hidden


class _MaskSource(Protocol):
    def _text_mask(self, error: BaseException | None = None) -> TextMask | None: ...


# The innermost open operation (the API's ``Operation``), here so that reporters can mask without importing the API.
OPEN_OPERATION: ContextVar[Any] = ContextVar("otel_hakgal_op", default=None)


def user_text_mask(error: BaseException | None = None) -> TextMask | None:
    """The mask for user text in what is reported here: the typed texts of the open operations
    (recorded in another form per ``redaction.text_mode``), and those noted on ``error`` when it
    escaped one. ``None`` when there is nothing to mask."""
    op: _MaskSource | None = OPEN_OPERATION.get()
    if op is not None:
        return op._text_mask(error)
    noted = hidden_texts(error) if error is not None else None
    mask = TextMask(noted) if noted else None
    return mask or None
