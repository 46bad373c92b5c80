import gzip
import urllib.error
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_hakgal.testing import OtlpReceiver, TelemetryRecorder


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_decodes_what_the_real_exporter_sends(otlp_receiver: OtlpReceiver) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=otlp_receiver.endpoint + "/v1/traces")))
    with provider.get_tracer("t").start_as_current_span("outer", attributes={"n": 1, "tags": ["a", "b"]}):
        with provider.get_tracer("t").start_as_current_span("inner"):
            pass
    provider.shutdown()
    spans = {s.name: s for s in otlp_receiver.wait_for_spans(2)}
    assert spans["inner"].parent_span_id == spans["outer"].span_id
    assert spans["outer"].attributes == {"n": 1, "tags": ("a", "b")}


def test_fault_injection_and_bad_bodies(otlp_receiver: OtlpReceiver) -> None:
    otlp_receiver.fault_status = 503
    assert _post(otlp_receiver.endpoint + "/v1/traces", b"") == 503
    otlp_receiver.fault_status = None
    assert _post(otlp_receiver.endpoint + "/v1/traces", b"\xff\x00garbage") == 400
    assert _post(otlp_receiver.endpoint + "/v1/traces", gzip.compress(b""), {"Content-Encoding": "gzip"}) == 200
    assert otlp_receiver.request_count == 3


def test_wait_times_out_with_a_clear_message(otlp_receiver: OtlpReceiver) -> None:
    with pytest.raises(TimeoutError, match="1 spans"):
        otlp_receiver.wait_for_spans(1, timeout_s=0.1)


def test_recorder_clear_forgets_spans_and_metrics(hakgal_telemetry: TelemetryRecorder) -> None:
    import otel_hakgal as hg

    with hg.cache_lookup("proof"):
        pass
    assert hakgal_telemetry.counter_value("hakgal.cache.lookups") == 1
    hakgal_telemetry.clear()
    assert hakgal_telemetry.spans() == [] and hakgal_telemetry.counter_value("hakgal.cache.lookups") == 0
