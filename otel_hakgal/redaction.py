"""Redaction of user data before it becomes telemetry."""

from __future__ import annotations

import hashlib

from otel_hakgal.config import RedactionSettings


def redact_text(text: str, settings: RedactionSettings) -> str | None:
    """Command or question text as the policy allows: truncated, hashed, or omitted (``None``).

    Truncation counts characters, so the result is always valid UTF-8.
    """
    if settings.text_mode == "omit":
        return None
    if settings.text_mode == "hash":
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return text[: settings.max_text_length]
