"""The ``[sentry]`` / ``[sentry-otlp]`` config section and the checks ``check-config`` runs.

Pure configuration: no sentry-sdk import, so a config naming a Sentry backend
loads (and reports what is wrong) without the ``sentry`` extra installed.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from otel_hakgal.backends.sentry.worker import DEFAULT_QUEUE_SIZE, DEFAULT_SENDERS
from otel_hakgal.config import number_range, positive, setting

if TYPE_CHECKING:
    from otel_hakgal.config import Config

# The two Sentry backends drive sentry-sdk's one process-wide client.
SENTRY_BACKENDS: Final = ("sentry", "sentry-otlp")


def _dsn(value: Any) -> str | None:
    if value == "":
        return None
    parsed = urllib.parse.urlsplit(value)
    ok = parsed.scheme in ("http", "https") and bool(parsed.hostname) and bool(parsed.username)
    ok = ok and parsed.path.strip("/").rsplit("/", 1)[-1].isdigit()
    return None if ok else "a Sentry DSN 'https://<public-key>@<host>/<project-id>', or '' for none"


def _rate(value: Any) -> str | None:
    return None if value is None or 0.0 <= value <= 1.0 else "a number from 0.0 to 1.0"


@dataclass(frozen=True)
class SentrySettings:
    dsn: str = setting(
        "", "Sentry DSN; empty sends nothing (the backend warns).", env="SENTRY_DSN", validate=_dsn, secret=True
    )
    environment: str = setting("", "Sentry environment; empty means `service.environment`.")
    release: str = setting("", "Sentry release; empty means `service.version`.")
    traces_sample_rate: float | None = setting(
        None,
        "Must equal the OTel sampler's rate if set: the OTel sampler decides once and Sentry follows it.",
        validate=_rate,
    )
    profiles_sample_rate: float = setting(
        0.0,
        "The seed's option: 1.0 profiles every sampled root span with sentry-sdk's continuous profiler"
        " (as `profile_session_sample_rate = 1.0`), 0.0 none; other values are refused (see Profiling).",
        validate=_rate,
    )
    profile_session_sample_rate: float | None = setting(
        None,
        "Share of processes whose sampled root spans are profiled (decided once per process at start);"
        " unset: `profiles_sample_rate` decides.",
        validate=_rate,
    )
    send_default_pii: bool = setting(False, "Let Sentry attach IP addresses, cookies and user data.")
    include_local_variables: bool = setting(
        False,
        "Attach the local variables of each stack frame to errors. They may hold user text: each value"
        " passes the secret scrubber and `redaction.text_mode` (cut to `redaction.max_text_length`, hashed,"
        " or, with `omit`, no variables at all).",
    )
    attach_stacktrace: bool = setting(True, "Attach stack traces to messages too.")
    tags: dict[str, str] = setting(
        {"component": "hak-gal-api", "system": "reasoning-engine"}, "Tags on every event and transaction."
    )
    max_queue_size: int = setting(
        DEFAULT_QUEUE_SIZE,
        "Transactions waiting to be converted and handed to sentry-sdk's transport, off the request thread"
        " (backend `sentry`; `sentry-otlp` queues in `batch.max_queue_size`). The worker waits for room in the"
        " transport's queue, so a burst waits here; beyond this many, transactions are dropped, counted in"
        " `otel_hakgal.export.dropped` and reported in a warning.",
        validate=positive,
    )
    max_concurrent_requests: int = setting(
        DEFAULT_SENDERS,
        "Envelopes (transactions, errors, logs, profile chunks) sent to Sentry at once, each over its own"
        " kept-alive connection. Sentry takes one transaction per request, so delivery is bounded by this"
        " over the round trip: 16 at 100 ms sends about 160 a second (1 is sentry-sdk's own transport)."
        " Rate limits (HTTP 429, `Retry-After`, `X-Sentry-Rate-Limits`) stop every sender at once.",
        validate=number_range(1, 64),
    )
    compression_level: int = setting(
        1,
        "gzip level of envelopes, 0 (none) to 9 (Sentry's default: here ~3x the CPU of level 1 for"
        " ~13% smaller bodies).",
        validate=number_range(0, 9),
    )


def effective_sample_rate(config: Config) -> float:
    """The share of new traces the configured OTel sampler keeps (what Sentry reports as sample rate)."""
    sampler = config.sampling.sampler
    if sampler.endswith("always_on"):
        return 1.0
    if sampler.endswith("always_off"):
        return 0.0
    return config.sampling.ratio


def both_backends_problem(config: Config, section: str) -> list[str]:
    """Both Sentry backends at once, reported once: by the first of them in ``backends``."""
    chosen = [name for name in config.backends if name in SENTRY_BACKENDS]
    if set(SENTRY_BACKENDS) <= set(chosen) and chosen[0] == section:
        return [config.problem("backends", "'sentry' and 'sentry-otlp' both drive the one Sentry SDK; choose one")]
    return []


def sample_rate_problem(config: Config, settings: SentrySettings, section: str) -> list[str]:
    """A ``traces_sample_rate`` that would make Sentry decide differently from the OTel sampler."""
    rate = effective_sample_rate(config)
    wanted = settings.traces_sample_rate
    if wanted is None or abs(wanted - rate) <= 1e-9:
        return []
    return [
        config.problem(
            f"{section}.traces_sample_rate",
            f"{wanted!r} disagrees with the OTel sampler ({config.sampling.sampler}, rate {rate!r}); "
            f"sampling is decided once, by the OTel sampler: "
            f"set sampling.ratio = {wanted!r} and drop {section}.traces_sample_rate",
        )
    ]


def profile_session_rate(settings: SentrySettings) -> float:
    """The continuous profiler's ``profile_session_sample_rate``: the explicit one, else the seed's option."""
    if settings.profile_session_sample_rate is not None:
        return settings.profile_session_sample_rate
    return settings.profiles_sample_rate


def profile_problems(config: Config, settings: SentrySettings, section: str) -> list[str]:
    """A ``profiles_sample_rate`` the continuous profiler cannot honour, or one contradicting the session rate."""
    legacy = settings.profiles_sample_rate
    session = settings.profile_session_sample_rate
    if legacy in (0.0, 1.0):
        if session is not None and legacy == 1.0 and session != 1.0:
            return [
                config.problem(
                    f"{section}.profiles_sample_rate",
                    f"1.0 contradicts {section}.profile_session_sample_rate = {session!r}; "
                    f"drop {section}.profiles_sample_rate (the session rate decides)",
                )
            ]
        return []
    return [
        config.problem(
            f"{section}.profiles_sample_rate",
            f"{legacy!r} cannot be honoured: Sentry profiles OTel spans with its continuous profiler, which "
            f"samples whole processes, not single transactions (a per-transaction profile needs a Sentry "
            f"transaction on the request thread, which OTel spans never have); set "
            f"{section}.profile_session_sample_rate = {legacy!r} to profile that share of processes "
            f"(all their sampled traces) and drop {section}.profiles_sample_rate, or set it to 1.0 or 0.0",
        )
    ]
