"""Redaction of user data and secrets before they become telemetry.

Two policies, both applied once, upstream of every backend:

* :func:`redact_text` records command and question text truncated, hashed or
  not at all (``redaction.text_mode``).
* :class:`SecretScrubber` replaces secrets with ``[REDACTED]``: API keys,
  bearer tokens, ``Authorization`` values, DSN and URL credentials, passwords,
  and the literal values of secret-looking environment variables and secret
  config settings. The fan-out span processor runs it on every finished span
  (attributes, events, status), and the Sentry backends on every error event
  and breadcrumb, so all backends see the same redacted data. It also replaces
  lone surrogates, so every string it returns encodes as valid UTF-8.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace.status import Status

from otel_hakgal.config import secret_values

if TYPE_CHECKING:
    from otel_hakgal.config import Config, RedactionSettings

REDACTED: Final = "[REDACTED]"

# Secret-looking text. Each alternative keeps its label (the named group) and
# replaces only the secret that follows it.
_SECRET_PATTERN: Final = re.compile(
    "|".join(
        (
            # scheme://user[:password]@host: DSN keys and basic-auth URLs
            r"(?P<url>\b[a-z][a-z0-9+.\-]*://)[^\s/:@?#\"'<>]+(?::[^\s/@?#\"'<>]*)?@",
            # Authorization header values, as header lines, dicts or JSON
            r"(?P<header>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',;}]+",
            # credentials after an HTTP auth scheme, anywhere ("Basic" needs base64-looking
            # credentials, so "basic reasoning" stays)
            r"(?P<scheme>\bbearer\s+)[A-Za-z0-9\-._~+/]{6,}=*",
            r"(?P<basic>\b(?-i:Basic)\s+)(?=\S*(?:[0-9+/=]|(?-i:[a-z][A-Z])))[A-Za-z0-9+/]{8,}={0,2}",
            # key=value and key: value assignments of secrets (api_key=..., "password": "p w")
            r"(?P<assignment>\b(?:[a-z0-9]+[_\-])*(?:api[_\-]?key|apikey|secret|password|passwd|pwd|token"
            r"|access[_\-]?key|private[_\-]?key|credentials?)\b[\"']?\s*[:=]\s*)"
            r"(?:\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\s\"'&,;}]+)",
            # well-known key formats: OpenAI/DeepSeek, Google, AWS, GitHub, Slack, JWTs
            r"\bsk-[A-Za-z0-9_\-]{12,}",
            r"\bAIza[0-9A-Za-z_\-]{20,}",
            r"\bAKIA[0-9A-Z]{16}\b",
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",
            r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        )
    ),
    re.IGNORECASE,
)
# Every alternative above contains one of these (lower-cased): a cheap test that spares most
# strings the full pattern, which costs ~20 us per string.
_MARKERS: Final = (
    "://", "auth", "bearer", "basic", "key", "secret", "passw", "pwd", "token", "credential",
    "sk-", "aiza", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "eyj",
)  # fmt: skip
_LABELS: Final = ("url", "header", "scheme", "basic", "assignment")

# Attribute and dict keys whose whole value is a secret (the last dotted segment is matched,
# so ``http.request.header.authorization`` counts and ``gen_ai.usage.input_tokens`` does not).
_SECRET_KEY: Final = re.compile(
    r"(?:^|[_\-])(?:authorization|cookie|set-cookie|password|passwd|secret|api[_\-]?key|apikey|token|dsn"
    r"|credentials?|private[_\-]?key|access[_\-]?key)$",
    re.IGNORECASE,
)
# Environment variables whose values are secrets, matched on the upper-cased name.
_SECRET_ENV_NAME: Final = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|DSN|CREDENTIAL")
_MIN_LITERAL_LENGTH: Final = 8  # shorter values ("true", "1") would redact ordinary words
_CACHE_LIMIT: Final = 4096
# Characters past the length cut that are still scrubbed before cutting (longer than any key format).
_CUT_MARGIN: Final = 512
_LEARNED_LIMIT: Final = 1024


def redact_text(text: str, settings: RedactionSettings, scrubber: SecretScrubber | None = None) -> str | None:
    """Command or question text as the policy allows: truncated, hashed, or omitted (``None``).

    Secrets are scrubbed before truncation, so a cut never leaves part of a
    key behind. Truncation counts characters, so the result is valid UTF-8.
    """
    if scrubber is not None:
        # Also in hash and omit mode: the scrubber learns the secret, for the app's derived copies.
        scrubbed = scrubber.scrub(text)
    if settings.text_mode == "omit":
        return None
    if settings.text_mode == "hash":
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    if scrubber is not None:
        text = scrubbed
    return valid_utf8(text[: settings.max_text_length])


def valid_utf8(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, so it always encodes as UTF-8."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def is_secret_key(key: str) -> bool:
    """Whether the value under ``key`` (an attribute, header or dict key) is a secret as a whole."""
    return _SECRET_KEY.search(key.rsplit(".", 1)[-1]) is not None


def secret_literals_from_environment(environ: Mapping[str, str]) -> list[str]:
    """Values of secret-looking environment variables (``*_API_KEY``, ``SENTRY_DSN``, ...)."""
    values = []
    for name, value in environ.items():
        if _SECRET_ENV_NAME.search(name.upper()):
            values.extend(_literal_parts(value))
    return values


def _literal_parts(value: str) -> list[str]:
    """The secret itself and, for a URL with credentials (a DSN), the credentials alone."""
    parts = [value]
    match = re.match(r"[a-z][a-z0-9+.\-]*://([^/@\s]+)@", value, re.IGNORECASE)
    if match:
        parts.extend(match.group(1).split(":"))
    return [part for part in parts if len(part) >= _MIN_LITERAL_LENGTH]


class SecretScrubber:
    """Replaces secrets with ``[REDACTED]`` in text, span data and Sentry events.

    ``literals`` are known secret values (from the environment and the secret
    config settings); the built-in patterns catch the rest.
    """

    def __init__(
        self,
        literals: Iterable[str] = (),
        extra_patterns: Sequence[str] = (),
        *,
        max_length: int | None = None,
        enabled: bool = True,
    ) -> None:
        """``max_length`` cuts longer values (whatever tracer provider made the span);
        ``enabled=False`` keeps only that cut and the UTF-8 repair."""
        self.max_length = max_length
        self.enabled = enabled
        self._known = {v for v in literals if len(v) >= _MIN_LITERAL_LENGTH}
        # Secrets the patterns found are remembered, so a copy the app derived from the same
        # text (a formula built from the question, "PasswordHunter2xyz") is redacted too.
        self._learned: dict[str, None] = {}
        self._lock = threading.Lock()
        self._literals = self._compile_literals()
        self._extra = re.compile("|".join(f"(?:{p})" for p in extra_patterns)) if extra_patterns else None
        # Span attribute values repeat (routes, model names): remember the clean ones.
        self._clean: set[str] = set()
        self._secret_keys: dict[str, bool] = {}

    def _compile_literals(self) -> re.Pattern[str] | None:
        values = sorted(self._known | self._learned.keys(), key=len, reverse=True)
        self._lowered_literals = tuple(v.lower() for v in values)
        # Case-insensitive: derived copies change case ("hunter2xyz" -> "Hunter2xyz").
        return re.compile("|".join(map(re.escape, values)), re.IGNORECASE) if values else None

    def _learn(self, secret: str) -> None:
        tokens = [t for t in re.split(r"[\s:@\"']+", secret) if len(t) >= _MIN_LITERAL_LENGTH]
        new = [t for t in tokens if t not in self._known and t not in self._learned]
        if not new:
            return
        with self._lock:
            for token in new:
                self._learned[token] = None
            while len(self._learned) > _LEARNED_LIMIT:  # oldest first
                del self._learned[next(iter(self._learned))]
            self._literals = self._compile_literals()
            self._clean.clear()  # a value cached as clean may hold the new secret

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        literals: Iterable[str] = (),
        extra_patterns: Sequence[str] = (),
        **options: Any,
    ) -> SecretScrubber:
        found = secret_literals_from_environment(os.environ if environ is None else environ)
        return cls([*found, *(p for v in literals for p in _literal_parts(v))], extra_patterns, **options)

    @classmethod
    def for_config(cls, config: Config, environ: Mapping[str, str] | None = None) -> SecretScrubber:
        """The scrubber for ``config``: its secret settings, the environment and ``secret_patterns``."""
        redaction = config.redaction
        return cls.from_environment(
            environ,
            secret_values(config),
            redaction.secret_patterns,
            max_length=redaction.max_attribute_length,
            enabled=redaction.scrub_secrets,
        )

    # --- text ---------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced; the same object when there was nothing to replace."""
        if not self.enabled:
            return valid_utf8(text)
        if text in self._clean:
            return text
        scrubbed = text
        lowered = text.lower()
        literals = self._literals
        if literals is not None and any(value in lowered for value in self._lowered_literals):
            scrubbed = literals.sub(REDACTED, scrubbed)
        if self._extra is not None:
            scrubbed = self._extra.sub(REDACTED, scrubbed)
        if any(marker in lowered for marker in _MARKERS):
            scrubbed = _SECRET_PATTERN.sub(self._replace, scrubbed)
        scrubbed = valid_utf8(scrubbed)
        if scrubbed == text:
            if len(self._clean) >= _CACHE_LIMIT:
                self._clean.clear()
            self._clean.add(text)
            return text
        return scrubbed

    def _replace(self, match: re.Match[str]) -> str:
        whole = match.group(0)
        for label in _LABELS:
            kept = match.group(label)
            if kept is not None:
                secret = whole[len(kept) :]
                if label == "url":
                    self._learn(secret[:-1])
                    return kept + REDACTED + "@"
                quote = secret[:1]
                self._learn(secret.strip("'\""))
                return kept + (quote + REDACTED + quote if quote in ("'", '"') else REDACTED)
        self._learn(whole)
        return REDACTED

    def _is_secret_key(self, key: str) -> bool:
        known = self._secret_keys.get(key)
        if known is None:
            if len(self._secret_keys) >= _CACHE_LIMIT:
                self._secret_keys.clear()
            known = self._secret_keys[key] = is_secret_key(key)
        return known

    def scrub_value(self, key: str, value: Any) -> Any:
        """An attribute or field value, scrubbed (strings, and sequences of strings)."""
        if isinstance(value, str):
            if value and self.enabled and self._is_secret_key(key):
                return REDACTED
            limit = self.max_length
            if limit is None:
                return self.scrub(value)
            if len(value) > limit + _CUT_MARGIN:
                # Bounds the patterns' work and the clean cache; the margin keeps a secret that
                # straddles the cut whole, so the cut never leaves part of one behind.
                value = value[: limit + _CUT_MARGIN]
            return self.scrub(value)[:limit]
        if isinstance(value, list | tuple) and any(isinstance(item, str) for item in value):
            items = [self.scrub_value(key, item) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
        return value

    # --- spans ----------------------------------------------------------------

    def scrub_attributes(self, attributes: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Scrubbed attributes, or ``None`` when nothing changed (the common case, no copy)."""
        if not attributes:
            return None
        changed: dict[str, Any] | None = None
        for key, value in attributes.items():
            scrubbed = self.scrub_value(key, value)
            if scrubbed is not value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = scrubbed
        return changed

    def scrub_span(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` itself when it holds no secret, else a scrubbed copy."""
        attributes = self.scrub_attributes(span.attributes)
        events: list[Event] | None = None
        for index, event in enumerate(span.events):
            event_attributes = self.scrub_attributes(event.attributes)
            if event_attributes is not None:
                if events is None:
                    events = list(span.events)
                events[index] = Event(event.name, event_attributes, event.timestamp)
        status = span.status
        if status.description:
            description = self.scrub(status.description)
            if description is not status.description:
                status = Status(status.status_code, description)
        if attributes is None and events is None and status is span.status:
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes if attributes is None else attributes,
            events=span.events if events is None else events,
            links=span.links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    # --- Sentry events and breadcrumbs ------------------------------------------

    def scrub_transaction(self, event: dict[str, Any]) -> dict[str, Any]:
        """A Sentry transaction: its ``spans`` came from scrubbed OTel spans, the rest (request data) not."""
        for key, value in event.items():
            if key != "spans":
                event[key] = self.scrub_data(value, key)
        return event

    def scrub_data(self, data: Any, key: str = "") -> Any:
        """A JSON-like structure (a Sentry event or breadcrumb) with every string scrubbed, in place."""
        if isinstance(data, str):
            return self.scrub_value(key, data)
        if isinstance(data, dict):
            for k, v in data.items():
                data[k] = self.scrub_data(v, k if isinstance(k, str) else "")
            return data
        if isinstance(data, list):
            for i, v in enumerate(data):
                data[i] = self.scrub_data(v, key)
            return data
        if isinstance(data, tuple):
            return tuple(self.scrub_data(v, key) for v in data)
        return data
