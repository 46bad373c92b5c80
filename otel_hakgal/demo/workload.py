"""The demo's scripted workload: every verb, a provider fallback, a prover timeout, an invalid formula, cache hits,
client mistakes (a missing file, an unknown verb) and one fault of the server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from otel_hakgal.demo.simulator import FaultKind, LLMSimulator


@dataclass(frozen=True)
class WorkloadStep:
    command: str
    expected_status: int = 200
    note: str = ""
    before: Callable[[LLMSimulator], None] | None = None
    after: Callable[[LLMSimulator], None] | None = None


@dataclass(frozen=True)
class StepResult:
    step: WorkloadStep
    status: int
    body: dict[str, Any]

    @property
    def as_expected(self) -> bool:
        return self.status == self.step.expected_status


def _deepseek_down(sim: LLMSimulator) -> None:
    sim.inject("deepseek", FaultKind.SERVER_ERROR, times=None)


def _deepseek_babbles(sim: LLMSimulator) -> None:
    sim.inject("deepseek", FaultKind.GARBAGE, times=None)


def _heal(sim: LLMSimulator) -> None:
    sim.clear_faults()


WORKLOAD: tuple[WorkloadStep, ...] = (
    WorkloadStep("help"),
    WorkloadStep("status"),
    WorkloadStep("show"),
    WorkloadStep("ask What is the capital of France?", note="functional constraint proves it"),
    WorkloadStep("ask What is the capital of France?", note="prompt and proof cache hits"),
    WorkloadStep("ask Is Rome a city?", note="functional: unknown, then Z3 proves it"),
    WorkloadStep("ask Is Lyon the capital of France?", note="refuted by the functional constraint"),
    WorkloadStep("ask Is the HAK-GAL framework scientifically founded?", note="refuted by Z3"),
    WorkloadStep("ask Do all main components work together?", note="complex formula: Z3 first"),
    WorkloadStep(
        "ask Is Berlin a city?",
        note="DeepSeek answers 503: fallback to Mistral",
        before=_deepseek_down,
        after=_heal,
    ),
    WorkloadStep(
        "ask Is the whale a vertebrate?",
        note="DeepSeek answers prose instead of logic: malformed, fallback",
        before=_deepseek_babbles,
        after=_heal,
    ),
    WorkloadStep("ask Is Adam an ancestor of Eva?", note="Z3 times out, the pattern matcher cannot decide"),
    WorkloadStep("ask Is this sentence false?", note="the logic firewall rejects the formula"),
    WorkloadStep("ask Does Tokyo have 37400000 inhabitants?", note="needs outside knowledge: the oracle"),
    WorkloadStep("explain Is Paris the capital of France?"),
    WorkloadStep("parse all x (IstHauptstadt(x) -> IstStadt(x))."),
    WorkloadStep("parse Hauptstadt(Frankreich, Paris", note="invalid formula"),
    WorkloadStep("what_is Paris"),
    WorkloadStep("search capital of Italy"),
    WorkloadStep("learn", note="adds facts the providers extracted during the questions"),
    WorkloadStep("ask Is the dolphin a vertebrate?", note="unknown: nothing is known about dolphins"),
    WorkloadStep("add_raw IstSaeugetier(Delfin)."),
    WorkloadStep("ask Is the dolphin a vertebrate?", note="now proved from the added fact"),
    WorkloadStep("retract IstSaeugetier(Delfin)."),
    WorkloadStep("build_kb corpus.txt", note="all providers extract facts in parallel"),
    WorkloadStep("clearcache"),
    WorkloadStep("build_kb missing.txt", expected_status=404, note="the client's mistake: outcome rejected, no error"),
    WorkloadStep("build_kb damaged.hkb", expected_status=500, note="a command that fails inside: a damaged data file"),
    WorkloadStep("frobnicate now", note="unknown verb: the list of valid verbs; command _OTHER, outcome rejected"),
    WorkloadStep("status"),
)


def post_command(base_url: str, command: str, timeout_s: float = 180.0) -> tuple[int, dict[str, Any]]:
    """``POST /api/command`` over real HTTP; returns status and JSON body (also for error statuses)."""
    request = urllib.request.Request(
        f"{base_url}/api/command",
        data=json.dumps({"command": command}).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def run_workload(
    base_url: str,
    simulator: LLMSimulator,
    steps: tuple[WorkloadStep, ...] = WORKLOAD,
    on_result: Callable[[int, StepResult], None] | None = None,
) -> list[StepResult]:
    results = []
    for number, step in enumerate(steps, start=1):
        if step.before is not None:
            step.before(simulator)
        try:
            status, body = post_command(base_url, step.command)
        finally:
            if step.after is not None:
                step.after(simulator)
        result = StepResult(step, status, body)
        results.append(result)
        if on_result is not None:
            on_result(number, result)
    return results
