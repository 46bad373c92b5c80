import pytest

from otel_hakgal.config import Price
from otel_hakgal.pricing import cost_of

TABLE = {"deepseek-chat": Price(0.27, 1.10), "eu-model": Price(2.0, 4.0, "EUR")}


def test_cost_per_million_tokens() -> None:
    cost = cost_of("deepseek-chat", 1_000_000, 500_000, TABLE)
    assert cost is not None and cost.amount == pytest.approx(0.27 + 0.55) and cost.currency == "USD"
    eur = cost_of("eu-model", 1000, 1000, TABLE)
    assert eur is not None and eur.currency == "EUR" and eur.amount == pytest.approx(0.006)


def test_unknown_model_has_no_cost_rather_than_zero() -> None:
    assert cost_of("llama-local", 1000, 1000, TABLE) is None
