"""Which operation spans an exception was raised through, remembered on the exception itself.

The API notes each span an exception escapes from; error backends read the
list to link an error to the span where it happened, even after that span
has ended. Kept apart from the API so backends need not import it.
"""

from __future__ import annotations

import contextlib
from typing import Final

from opentelemetry.trace import Span

_ESCAPED_SPANS: Final = "_otel_hakgal_escaped_spans"


def note_escape(error: BaseException, span: Span) -> None:
    """Remember on ``error`` each span it escaped from, innermost first."""
    with contextlib.suppress(Exception):  # an exception type that refuses attributes just isn't linked
        spans = error.__dict__.setdefault(_ESCAPED_SPANS, [])
        spans.append(span)


def escaped_spans(error: BaseException) -> list[Span]:
    """The operation spans ``error`` was raised through, innermost first (empty if none)."""
    spans = getattr(error, "__dict__", {}).get(_ESCAPED_SPANS)
    return list(spans) if isinstance(spans, list) else []
