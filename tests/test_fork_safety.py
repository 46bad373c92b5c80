"""A process that forks while its metrics are being collected or exported: the child still exports its own.

gunicorn's master runs the pipeline and forks its workers at any moment of the metric reader's cycle.
Each case runs a real process that forks at the worst moment, against a loopback OTLP receiver: the
child records a command and its metric must arrive (before the fixes, that worker never exported a
metric again).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otel_hakgal.conventions import Attr, Metric
from otel_hakgal.testing import OtlpReceiver
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
