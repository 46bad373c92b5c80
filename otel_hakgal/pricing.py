"""LLM cost from the configured pricing table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from otel_hakgal.config import Price

_TOKENS_PER_UNIT = 1_000_000


@dataclass(frozen=True)
class Cost:
    amount: float
    currency: str


def cost_of(model: str, input_tokens: int, output_tokens: int, pricing: Mapping[str, Price]) -> Cost | None:
    """The call's cost, or ``None`` when ``model`` has no price: unknown is never reported as 0."""
    price = pricing.get(model)
    if price is None:
        return None
    amount = (input_tokens * price.input + output_tokens * price.output) / _TOKENS_PER_UNIT
    return Cost(amount, price.currency)
