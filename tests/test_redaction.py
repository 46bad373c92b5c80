from otel_hakgal.config import RedactionSettings
from otel_hakgal.redaction import redact_text


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
