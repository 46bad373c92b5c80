import re
import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Status, StatusCode

import otel_hakgal as hg
from otel_hakgal.config import RedactionSettings
from otel_hakgal.redaction import REDACTED, SecretScrubber, is_secret_key, redact_text, valid_utf8
from otel_hakgal.testing import TelemetryRecorder


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
            ]
        )
    )
    secret = shape.format(s=body)
    before, after = draw(_surrounding), draw(_surrounding)
    assume(body not in before + after)  # the surroundings hold no other copy of the key
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


def test_secret_environment_variables_are_scrubbed_as_literals() -> None:
    scrubber = SecretScrubber.from_environment(
        {
            "MISTRAL_API_KEY": "abcdefghijklmnop1234",
            "SENTRY_DSN": "https://0123456789abcdef@o1.ingest.sentry.io/2",
            "PATH": "/usr/bin:/bin",
            "SHORT_TOKEN": "1",  # too short to be told from ordinary words
        }
    )
    assert scrubber.scrub("HTTP 401: Incorrect API key provided: abcdefghijklmnop1234") == (
        f"HTTP 401: Incorrect API key provided: {REDACTED}"
    )
    assert "0123456789abcdef" not in scrubber.scrub("key 0123456789abcdef in a log line")
    assert scrubber.scrub("/usr/bin:/bin and 1") == "/usr/bin:/bin and 1"


def test_extra_patterns_from_the_config() -> None:
    scrubber = SecretScrubber(extra_patterns=[r"HG-\d{6}"])
    assert scrubber.scrub("ticket HG-123456 opened") == f"ticket {REDACTED} opened"


def test_keys_that_name_a_secret() -> None:
    assert is_secret_key("http.request.header.authorization")
    assert is_secret_key("http.request.header.x-api-key")
    assert is_secret_key("db.password")
    assert not is_secret_key("gen_ai.usage.input_tokens")
    assert not is_secret_key("hakgal.cache.key")


def _span(attributes: dict[str, object], events: list[Event] = (), status: Status | None = None) -> ReadableSpan:  # type: ignore[assignment]
    return ReadableSpan("s", attributes=attributes, events=events, status=status or Status(StatusCode.UNSET))  # type: ignore[arg-type]


def test_a_clean_span_passes_through_without_a_copy() -> None:
    span = _span({"http.route": "/api/command", "gen_ai.usage.input_tokens": 12})
    assert SecretScrubber().scrub_span(span) is span


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
    with hg.step("hakgal.parse", attributes={"hakgal.query.formula": value}):
        pass
    kept = hakgal_telemetry.span("hakgal.parse").attributes["hakgal.query.formula"]
    assert len(kept) == limit and kept.startswith("x" * (limit - 10) + " [REDAC")
    assert "sk-" not in kept and "a1B2" not in kept
