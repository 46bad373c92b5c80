"""Redaction of user data and secrets before they become telemetry.

Two policies, both applied once, upstream of every backend:

* :func:`redact_text` records command and question text truncated, hashed or
  not at all (``redaction.text_mode``).
* :class:`SecretScrubber` replaces secrets with ``[REDACTED]``: API keys,
  bearer tokens, ``Authorization`` values, URL credentials and secret query
  parameters, passwords (also in prose), and the literal values of
  secret-looking environment variables (also those set after ``setup()``) and
  secret config settings. It runs on every finished span (name, attributes,
  events, links, status) before any backend reads it: on the export thread of
  the batch span processors and the Sentry transaction worker, in the fan-out
  span processor for the others (see :mod:`otel_hakgal.backends.batching`); and
  the Sentry backends run it on every error event and breadcrumb, so all
  backends see the same redacted data. It also cuts every string to
  ``redaction.max_attribute_length``. It
  replaces lone surrogates, so every string it returns encodes as valid UTF-8.

A Sentry DSN's public key is not a secret (Sentry needs it in every envelope's
trace header, browser SDKs ship it): only a DSN's secret part and the DSN as a
whole are.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link
from opentelemetry.trace.status import Status

from otel_hakgal.config import secret_values
from otel_hakgal.genai import JSON_ATTRIBUTES, rebuild_json

if TYPE_CHECKING:
    from otel_hakgal.config import Config, RedactionSettings

REDACTED: Final = "[REDACTED]"

# The value of a password or secret assignment: up to whitespace, so "Tr0ub4dor&3xyz" stays
# whole, except that , ; end it before another key=value ("password=abc, user=bob") and } ends
# it where it closes a brace ("{password=abc}"). In a query string (after ? or &) the query
# pattern takes it instead, up to the next &.
_PASSWORD_VALUE: Final = r"(?:[^\s\"',;}]|[,;](?!\s*[a-z_][\w.\-]*\s*[=:])|\}(?=[^\s,;}\])\"']))+"
# Words that follow "password is" in messages about a password, not in one ("password is incorrect").
_NOT_A_PASSWORD: Final = (
    r"not|too|in(?:correct|valid)|wrong|required|missing|empty|expired|correct|valid|set|reset|changed"
    r"|the|an?|being|now|weak"
)

# Secret-looking text. Each alternative keeps its label (the named group) and
# replaces only the secret that follows it.
_SECRET_PATTERN: Final = re.compile(
    "|".join(
        (
            # scheme://user[:password]@host: DSNs and basic-auth URLs
            r"(?P<url>\b[a-z][a-z0-9+.\-]*://)[^\s/:@?#\"'<>]+(?::[^\s/@?#\"'<>]*)?@",
            # Authorization header values, as header lines, dicts or JSON
            r"(?P<header>\b(?:proxy-)?authorization\b[\"']?\s*[:=]\s*[\"']?)[^\r\n\"',;}]+",
            # credentials after an HTTP auth scheme, anywhere ("Basic" needs base64-looking
            # credentials, so "basic reasoning" stays)
            r"(?P<scheme>\bbearer\s+)[A-Za-z0-9\-._~+/]{6,}=*",
            r"(?P<basic>\b(?-i:Basic)\s+)(?=\S*(?:[0-9+/=]|(?-i:[a-z][A-Z])))[A-Za-z0-9+/]{8,}={0,2}",
            # query parameters (?key=... Google style, ?sig=..., X-Amz-Signature=...): the value up to
            # & or #; at the start of the text too (url.query, Sentry's request.query_string)
            r"(?P<query>(?:(?:(?<=[?&])|^)(?:key|auth|sig|api[_\-]?key|apikey|access[_\-]?token|token"
            r"|(?:[a-z0-9]+[_\-])*signature)|(?<=[?&])(?:[a-z0-9]+[_\-])*(?:password|passwd|passphrase|pwd|secret))=)"
            r"[^&#\s\"'<>]+",
            # "password: correct horse battery" (a colon and a space, as in prose or YAML): the
            # words up to the end of the line or sentence
            r"(?P<password_line>\b(?:[a-z0-9]+[_\-])*(?:password|passwd|passphrase|pwd|secret)\b:[ \t]+)"
            rf"(?![\"'])(?!(?:{_NOT_A_PASSWORD})\b)[^\r\n]+?(?=[.!?]?[ \t]*(?:$|[\r\n])|[.!?][ \t])",
            # password=..., "secret": "p w", PASSWORD:...
            r"(?P<password>\b(?:[a-z0-9]+[_\-])*(?:password|passwd|passphrase|pwd|secret)\b[\"']?\s*[:=]\s*)"
            rf"(?:\"[^\"\r\n]*\"|'[^'\r\n]*'|{_PASSWORD_VALUE})",
            # secrets in prose: "my password is Tr0ub4dor", "set the password to ...", "my api key is ..."
            r"(?P<prose>\b(?:password|passwd|passphrase|passwort|(?:api|access|secret)[ _\-]?key|token)"
            r"\s+(?:is|was|ist|war|to):?\s+)"
            rf"(?!(?:{_NOT_A_PASSWORD})\b)(?:\"[^\"\r\n]*\"|'[^'\r\n]*'|[^\s\"']+)",
            # other key=value and key: value assignments of secrets (api_key=..., "token": "...")
            r"(?P<assignment>\b(?:[a-z0-9]+[_\-])*(?:api[_\-]?key|apikey|token"
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
    "://", "auth", "bearer", "basic", "key", "secret", "passw", "passphrase", "pwd", "token", "credential",
    "sig=", "signature", "sk-", "aiza", "akia", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "eyj",
)  # fmt: skip
_LABELS: Final = ("url", "header", "scheme", "basic", "query", "password_line", "password", "prose", "assignment")

# Attribute and dict keys whose whole value is a secret (the last dotted segment is matched,
# so ``http.request.header.authorization`` counts and ``gen_ai.usage.input_tokens`` does not;
# nor does ``public_key``, the DSN key Sentry needs in its trace header).
_SECRET_KEY: Final = re.compile(
    r"(?:^|[_\-])(?:authorization|cookie|set-cookie|password|passwd|passphrase|secret|api[_\-]?key|apikey"
    r"|token|dsn|credentials?|private[_\-]?key|access[_\-]?key)$",
    re.IGNORECASE,
)
# Environment variables whose values are secrets, matched on the upper-cased name.
_SECRET_ENV_NAME: Final = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|DSN|CREDENTIAL")
_MIN_LITERAL_LENGTH: Final = 8  # shorter values ("true", "1") would redact ordinary words
# A literal's derived copies are found by its longest run of letters and digits (which a copy
# that drops or changes separators keeps); a shorter run would send most strings to the regex,
# so such a literal is looked for in the text without its separators (which costs ~1 us a string).
_MIN_PROBE_LENGTH: Final = 4
_ALNUM_RUN: Final = re.compile(r"[a-z0-9]+")
_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]+")
# What a derived copy may put between a secret's letters and digits ("hunter2-x" -> "Hunter2_X").
_SEPARATOR: Final = r"[^\sa-zA-Z0-9]*"
_CACHE_LIMIT: Final = 4096
# Characters past the length cut that are still scrubbed before cutting (longer than any key format).
_CUT_MARGIN: Final = 512
_LEARNED_LIMIT: Final = 1024
_NO_LIMIT: Final = 1 << 62
# Attribute values with no string in them.
_SCALARS: Final = frozenset({int, float, bool, bytes, type(None)})
# How often a scrubber watching os.environ re-reads it when its size has not changed.
ENVIRON_REFRESH_S: Final = 1.0


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
    """The secret itself and its parts that are secrets alone: a URL's password (a legacy DSN's
    secret key), the credentials after an auth scheme (``Bearer <token>``)."""
    parts = [value]
    match = re.match(r"[a-z][a-z0-9+.\-]*://([^/@\s]+)@", value, re.IGNORECASE)
    if match:
        parts.extend(_userinfo_secrets(match.group(1)))
    match = re.fullmatch(r"(?:bearer|basic|token|api-?key)\s+(\S+)", value.strip(), re.IGNORECASE)
    if match:
        parts.append(match.group(1))
    return [part for part in parts if len(part) >= _MIN_LITERAL_LENGTH]


def _userinfo_secrets(userinfo: str) -> list[str]:
    """The secrets in a URL's ``user[:password]``: the password; a user without one is a token
    (``https://<token>@host``), a DSN's public key included: Sentry's envelope headers carry it, but
    in span data it is a secret (the Sentry backends keep it in the trace header alone)."""
    user, colon, password = userinfo.partition(":")
    if colon:
        return [password] if password else []
    return [user]


@functools.lru_cache(maxsize=2 * _LEARNED_LIMIT)  # the index is rebuilt at each learned secret
def _literal_entry(value: str) -> tuple[str, str, bool]:
    """``(probe, regex, squeezed)`` for a known secret: the probe must occur in the lower-cased
    text (``squeezed``: without its separators) for the regex to run. A secret with 8+ letters
    and digits also matches its derived copies: any case, separators changed or dropped
    ("hunter2-x" matches "PasswordHunter2X")."""
    lowered = value.lower()
    runs = _ALNUM_RUN.findall(lowered)
    squeezed = "".join(runs)
    if any(c.isspace() for c in value) or len(squeezed) < _MIN_LITERAL_LENGTH:
        return lowered, re.escape(value), False
    probe = max(runs, key=len)
    if len(probe) < _MIN_PROBE_LENGTH:
        return squeezed, _SEPARATOR.join(squeezed), True
    return probe, _SEPARATOR.join(squeezed), False


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
        environ_refresh_s: float | None = None,
    ) -> None:
        """``max_length`` cuts longer values (whatever tracer provider made the span);
        ``enabled=False`` keeps only that cut and the UTF-8 repair.

        With ``environ_refresh_s``, values of secret-looking variables in ``os.environ`` are
        secrets whenever they are set (an app may load a ``.env`` after ``setup()``): a new
        variable at the next call, a changed value within ``environ_refresh_s`` seconds.
        """
        self.max_length = max_length
        self.enabled = enabled
        self._known = {v for v in literals if len(v) >= _MIN_LITERAL_LENGTH}
        # Secrets the patterns found are remembered, so a copy the app derived from the same
        # text (a formula built from the question, "PasswordHunter2xyz") is redacted too.
        self._learned: dict[str, None] = {}
        self._lock = threading.Lock()
        self._extra = re.compile("|".join(f"(?:{p})" for p in extra_patterns)) if extra_patterns else None
        # Span attribute values repeat (routes, model names): remember the clean ones.
        self._clean: set[str] = set()
        self._secret_keys: dict[str, bool] = {}
        self._refresh_s = environ_refresh_s if enabled else None
        self._environ_size = -1
        self._next_scan = 0.0
        # (probe, regex) pairs, longest regex first: probed in the text, and in the text without separators.
        self._literal_index: tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = ((), ())
        self._index_literals()
        self._watch()

    def _index_literals(self) -> None:
        """Rebuilds the literals' probes; called with the lock held, or before any other thread."""
        # Longest regex first, so a secret that contains another is replaced whole.
        entries = sorted({_literal_entry(v) for v in (*self._known, *self._learned)}, key=lambda e: -len(e[1]))
        self._literal_index = (
            tuple((probe, regex) for probe, regex, squeezed in entries if not squeezed),
            tuple((probe, regex) for probe, regex, squeezed in entries if squeezed),
        )
        self._clean.clear()  # a value cached as clean may hold a new secret

    def _learn(self, secret: str) -> None:
        tokens = [t for t in re.split(r"[\s:@\"']+", secret) if len(t) >= _MIN_LITERAL_LENGTH]
        # A scrubbed text scrubbed again ("password=[REDACTED]") teaches nothing.
        new = [t for t in tokens if t not in self._known and t not in self._learned and REDACTED not in t]
        if not new:
            return
        with self._lock:
            for token in new:
                self._learned[token] = None
            while len(self._learned) > _LEARNED_LIMIT:  # oldest first
                del self._learned[next(iter(self._learned))]
            self._index_literals()

    def _watch(self) -> None:
        """Re-reads ``os.environ`` when it grew or shrank, else at most every ``environ_refresh_s``."""
        if self._refresh_s is None:
            return
        size = len(os.environ)
        now = time.monotonic()
        if size == self._environ_size and now < self._next_scan:
            return
        with self._lock:
            if size == self._environ_size and now < self._next_scan:
                return  # another thread read it while this one waited
            self._environ_size = size
            self._next_scan = now + self._refresh_s
            try:
                found = set(secret_literals_from_environment(os.environ))
            except (KeyError, RuntimeError):  # another thread changed it while we read: next call
                self._next_scan = now
                return
            if not found <= self._known:
                # Values stay secrets when the variable changes: a rotated key is still a key.
                self._known |= found
                self._index_literals()

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        literals: Iterable[str] = (),
        extra_patterns: Sequence[str] = (),
        *,
        environ_refresh_s: float = ENVIRON_REFRESH_S,
        **options: Any,
    ) -> SecretScrubber:
        """A scrubber for ``environ``'s secret-looking values; without ``environ`` it watches
        ``os.environ`` (see ``environ_refresh_s``)."""
        given = [p for v in literals for p in _literal_parts(v)]
        if environ is None:
            return cls(given, extra_patterns, environ_refresh_s=environ_refresh_s, **options)
        return cls([*secret_literals_from_environment(environ), *given], extra_patterns, **options)

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
    # The public methods first re-read the environment if due; the private ones do the work.

    def scrub(self, text: str, *, remember: bool = True) -> str:
        """``text`` with every secret replaced; the same object when there was nothing to replace.

        ``remember=False`` for text that never repeats (log lines): it would only push the
        repeating span values out of the cache of clean strings.
        """
        self._watch()
        return self._scrub(text, remember)

    def _scrub(self, text: str, remember: bool = True) -> str:
        if not self.enabled:
            return valid_utf8(text)
        if text in self._clean:
            return text
        scrubbed = text
        lowered = text.lower()
        plain, squeezed = self._literal_index
        hits = [regex for probe, regex in plain if probe in lowered]
        if squeezed:
            without_separators = _NOT_ALNUM.sub("", lowered)
            if more := [regex for probe, regex in squeezed if probe in without_separators]:
                hits = sorted((*hits, *more), key=len, reverse=True)
        if hits:
            scrubbed = re.compile("|".join(hits), re.IGNORECASE).sub(REDACTED, scrubbed)
        if self._extra is not None:
            scrubbed = self._extra.sub(REDACTED, scrubbed)
        for marker in _MARKERS:  # a plain loop: any() over a generator costs twice as much here
            if marker in lowered:
                scrubbed = _SECRET_PATTERN.sub(self._replace, scrubbed)
                break
        scrubbed = valid_utf8(scrubbed)
        if scrubbed == text:
            if not remember:
                return text
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
                    for part in secret[:-1].split(":"):
                        self._learn(part)
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

    def _cut(self, text: str, remember: bool = True) -> str:
        """``text`` scrubbed, then cut to ``max_length``."""
        limit = self.max_length
        if limit is None:
            return self._scrub(text, remember)
        if len(text) <= limit and text in self._clean:  # the common case, first
            return text
        if len(text) > limit + _CUT_MARGIN:
            # Bounds the patterns' work and the clean cache; the margin keeps a secret that
            # straddles the cut whole, so the cut never leaves part of one behind.
            text = text[: limit + _CUT_MARGIN]
        return self._scrub(text, remember)[:limit]  # a str sliced past its end is the same object

    def _json(self, text: str, remember: bool = True) -> str:
        """A JSON attribute (captured GenAI messages): scrubbed and cut so that it stays valid JSON.

        Scrubbing the serialized text could swallow a closing quote, and a plain cut would end it
        mid-structure: instead each string inside is scrubbed and the result re-serialized with its
        message contents cut (:func:`otel_hakgal.genai.dumps_within`). Text that is not JSON is
        treated as plain text.
        """
        limit = self.max_length
        if (limit is None or len(text) <= limit) and (text in self._clean or self._scrub(text, remember) is text):
            return text  # no secret and short enough: the common case, no parsing
        rebuilt = rebuild_json(text, self._data, limit)
        return self._cut(text, remember) if rebuilt is None else rebuilt

    def scrub_value(self, key: str, value: Any, *, remember: bool = True) -> Any:
        """An attribute or field value, scrubbed (strings, and sequences and mappings of them).

        ``remember=False`` for values that never repeat (log lines), as for :meth:`scrub`.
        """
        self._watch()
        return self._value(key, value, remember)

    def _value(self, key: str, value: Any, remember: bool = True) -> Any:
        kind = value.__class__
        if kind is str:
            if value and self.enabled and self._is_secret_key(key):
                return REDACTED
            if key in JSON_ATTRIBUTES:
                return self._json(value, remember)
            return self._cut(value, remember)
        if kind in _SCALARS:  # before the isinstance tests below, which cost more than the rest
            return value
        if isinstance(value, list | tuple) and any(isinstance(item, str | list | tuple | Mapping) for item in value):
            items = [self._value(key, item, remember) for item in value]
            return value if all(a is b for a, b in zip(items, value, strict=True)) else type(value)(items)
        if isinstance(value, Mapping):  # OTel's AnyValue maps
            return self._attributes(value, remember) or value
        if isinstance(value, str):  # a str subclass
            return self._value(key, str(value), remember)
        return value

    # --- spans ----------------------------------------------------------------

    def scrub_attributes(
        self, attributes: Mapping[str, Any] | None, *, remember: bool = True
    ) -> Mapping[str, Any] | None:
        """Scrubbed attributes, or ``None`` when nothing changed (the common case, no copy).

        ``remember=False`` for attributes of records that never repeat (log lines), as for :meth:`scrub`.
        """
        self._watch()
        return self._attributes(attributes, remember)

    def _attributes(self, attributes: Mapping[str, Any] | None, remember: bool = True) -> Mapping[str, Any] | None:
        if not attributes:
            return None
        changed: dict[str, Any] | None = None
        # Inlined fast path for the common value: a short string known clean under a plain key.
        limit = _NO_LIMIT if self.max_length is None else self.max_length
        clean, plain = self._clean, self._secret_keys
        for key, value in attributes.items():
            if value.__class__ is str and len(value) <= limit and value in clean and plain.get(key) is False:
                continue
            scrubbed = self._value(key, value, remember)
            if scrubbed is not value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = scrubbed
        return changed

    def scrub_span(self, span: ReadableSpan) -> ReadableSpan:
        """``span`` itself when it holds no secret and nothing too long, else a scrubbed copy.

        Every string is scrubbed and cut: the name, attributes, event names and attributes
        (exception messages and stack traces), link attributes and the status description.
        """
        self._watch()
        return self._span(span)

    def scrub_spans(self, spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
        """Each of ``spans`` as :meth:`scrub_span` gives it (the environment re-read once, if due)."""
        self._watch()
        return [self._span(span) for span in spans]

    def _span(self, span: ReadableSpan) -> ReadableSpan:
        name = self._cut(span.name)
        attributes = self._attributes(span.attributes)
        events: list[Event] | None = None
        for index, event in enumerate(span.events):
            event_name = self._cut(event.name)
            event_attributes = self._attributes(event.attributes)
            if event_attributes is not None or event_name is not event.name:
                if events is None:
                    events = list(span.events)
                kept = event.attributes if event_attributes is None else event_attributes
                events[index] = Event(event_name, kept, event.timestamp)
        links: list[Link] | None = None
        for index, link in enumerate(span.links):
            link_attributes = self._attributes(link.attributes)
            if link_attributes is not None:
                if links is None:
                    links = list(span.links)
                links[index] = Link(link.context, link_attributes)
        status = span.status
        if status.description:
            description = self._cut(status.description)
            if description is not status.description:
                status = Status(status.status_code, description)
        if name is span.name and attributes is None and events is None and links is None and status is span.status:
            return span
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=span.attributes if attributes is None else attributes,
            events=span.events if events is None else events,
            links=span.links if links is None else links,
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    # --- Sentry events and breadcrumbs ------------------------------------------

    def scrub_transaction(self, event: dict[str, Any]) -> dict[str, Any]:
        """A Sentry transaction: its ``spans`` came from scrubbed OTel spans, the rest (request data) not."""
        self._watch()
        for key, value in event.items():
            if key != "spans":
                event[key] = self._data(value, key)
        return event

    def scrub_data(self, data: Any, key: str = "") -> Any:
        """A JSON-like structure (a Sentry event or breadcrumb) with every string scrubbed, in place."""
        self._watch()
        return self._data(data, key)

    def _data(self, data: Any, key: str = "") -> Any:
        if isinstance(data, str):
            return self._value(key, data)
        if isinstance(data, dict):
            for k, v in data.items():
                data[k] = self._data(v, k if isinstance(k, str) else "")
            return data
        if isinstance(data, list):
            for i, v in enumerate(data):
                data[i] = self._data(v, key)
            return data
        if isinstance(data, tuple):
            return tuple(self._data(v, key) for v in data)
        return data
