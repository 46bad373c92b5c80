"""A process that forks while its telemetry is being collected or exported: the child still exports its own.

gunicorn's master runs the pipeline and forks its workers at any moment of the exporters' cycles.
Each case runs a real process that forks at the worst moment, against a loopback OTLP receiver: the
child records a command and its telemetry must arrive (before the fixes, such a worker never exported
a metric again, or never sent its first span).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_hakgal.conventions import Attr, Metric
from otel_hakgal.testing import OtlpReceiver, SentryReceiver
from tests.support.processes import ROOT, clean_env

pytestmark = [pytest.mark.system, pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")]

# argv: a path to wait for (the parent is in the middle of the moment under test), and "collect" for a
# collection held up by a slow observable callback (else the receiver holds an export).
FORKING_PROCESS = """
import os, sys, time
from opentelemetry import metrics
from opentelemetry.metrics import Observation
import otel_hakgal as hg

moment, hold_collection = sys.argv[1], sys.argv[2] == "collect"
parent = os.getpid()


def slow(options):
    if hold_collection and os.getpid() == parent and not os.path.exists(moment):
        open(moment, "w").close()
        time.sleep(1.0)  # the collection holds its lock meanwhile
    return [Observation(1)]


hg.setup(backends=["otlp"])
metrics.get_meter("tests.fork").create_observable_gauge("tests.fork.slow", callbacks=[slow])
with hg.command("parent"):
    pass
while not os.path.exists(moment):
    time.sleep(0.01)
time.sleep(0.1)
if os.fork() == 0:
    with hg.command("child"):
        pass
    time.sleep(4)  # the child's reader collects every 100 ms
    os._exit(0)
os.wait()
"""


@pytest.mark.parametrize("moment", ["export", "collect"])
def test_a_child_forked_in_the_middle_of_the_parents_metric_cycle_exports_its_own(
    moment: str, otlp_receiver: OtlpReceiver, tmp_path: Path
) -> None:
    script, marker = tmp_path / "fork.py", tmp_path / "moment"
    script.write_text(FORKING_PROCESS)
    if moment == "export":
        otlp_receiver.fail(delay_s=1.0)  # every export stays in flight for a second
    env = clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint, OTEL_METRIC_EXPORT_INTERVAL="100")
    process = subprocess.Popen([sys.executable, str(script), str(marker), moment], env=env, cwd=ROOT)
    try:
        if moment == "export":  # the receiver holds the parent's first metric export now
            deadline = time.monotonic() + 30
            while not otlp_receiver.headers_for("metrics") and time.monotonic() < deadline:
                time.sleep(0.01)
            marker.touch()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    points = otlp_receiver.metric_points(Metric.COMMAND_DURATION)
    assert {point.attributes.get(Attr.COMMAND_NAME) for point in points} == {"parent", "child"}


# argv: the backend, a path to wait for (the receiver holds the parent's first span export now) and
# a path to create as soon as the fork returned in the parent.
FORK_DURING_SPAN_EXPORT = """
import os, sys, time
import otel_hakgal as hg

backend, hold, forked = sys.argv[1:4]
handle = hg.setup(backends=[backend])
with hg.command("parent"):
    pass
while not os.path.exists(hold):
    time.sleep(0.01)
if os.fork() == 0:
    with hg.command("child"):
        pass
    os._exit(0 if handle.force_flush(timeout_s=10) else 1)
open(forked, "w").close()
_, status = os.wait()
sys.exit(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize("backend", ["otlp", "sentry"])
def test_a_fork_waits_for_the_span_export_in_flight_and_the_child_sends_its_own(
    backend: str, otlp_receiver: OtlpReceiver, sentry_receiver: SentryReceiver, tmp_path: Path
) -> None:
    # An export holds locks for its whole request (a module's import lock on the first one: a
    # gunicorn worker forked then never sent a span). The fork must wait until it is answered.
    receiver: OtlpReceiver | SentryReceiver = otlp_receiver if backend == "otlp" else sentry_receiver

    def delivered() -> set[str]:
        if backend == "otlp":
            return {span.name for span in otlp_receiver.spans()}
        return {str(event.get("transaction")) for event in sentry_receiver.transactions()}

    script, hold, forked = tmp_path / "fork.py", tmp_path / "hold", tmp_path / "forked"
    script.write_text(FORK_DURING_SPAN_EXPORT)
    receiver.fail(delay_s=1.0)  # the parent's export stays in flight for a second
    env = clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp_receiver.endpoint,
        SENTRY_DSN=sentry_receiver.dsn,
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_METRIC_EXPORT_INTERVAL="600000",
    )
    process = subprocess.Popen([sys.executable, str(script), backend, str(hold), str(forked)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not receiver.request_count and time.monotonic() < deadline:
            time.sleep(0.01)
        hold.touch()
        while not forked.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        answered_before_fork = delivered()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    assert answered_before_fork == {"hakgal.command parent"}
    deadline = time.monotonic() + 10
    while len(delivered()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert delivered() == {"hakgal.command parent", "hakgal.command child"}
