import re

import pytest

from otel_hakgal import conventions as cv


def _constants(namespace: type) -> dict[str, str]:
    return {k: v for k, v in vars(namespace).items() if k.isupper() and isinstance(v, str)}


def test_every_attribute_key_is_defined_once() -> None:
    keys = [a.key for a in cv.ATTRIBUTES]
    assert len(keys) == len(set(keys))
    assert set(_constants(cv.Attr).values()) == set(keys)


def test_names_are_plain_strings() -> None:
    # Attribute dicts are built on the hot path: no str subclass, no lookups.
    for namespace in (cv.Attr, cv.SpanName, cv.Metric):
        assert all(type(name) is str for name in _constants(namespace).values()), namespace


def test_a_name_cannot_be_defined_twice() -> None:
    with pytest.raises(ValueError, match="defined twice"):
        cv._attribute(cv.Attr.COMMAND_NAME, "string", "again")
    with pytest.raises(ValueError, match="defined twice"):
        cv._metric(cv.Metric.ERRORS, "counter", "{error}", "again", ())
    assert [a.key for a in cv.ATTRIBUTES].count(cv.Attr.COMMAND_NAME) == 1


def test_metric_def() -> None:
    assert cv.metric_def(cv.Metric.LLM_COST).unit == f"{{{cv.DEFAULT_COST_CURRENCY}}}"
    with pytest.raises(KeyError):
        cv.metric_def("hakgal.nothing")


def test_spans_and_metrics_use_only_defined_attributes() -> None:
    defined = {a.key for a in cv.ATTRIBUTES}
    for span in cv.SPANS:
        assert set(span.attributes) <= defined, span.name
    for metric in cv.METRICS:
        assert set(metric.attributes) <= defined, metric.name
    assert {s.name for s in cv.SPANS} == set(_constants(cv.SpanName).values())
    assert {m.name for m in cv.METRICS} == set(_constants(cv.Metric).values())


def test_own_names_are_domain_first() -> None:
    pattern = re.compile(r"^hakgal\.(command|query|prover|cache|kb|rag|llm|error|errors|message|parse)\b")
    # otel_hakgal.*: the layer's own health (what the export dropped), not HAK-GAL's domain.
    foreign = ("gen_ai.", "server.", "error.type", "otel_hakgal.")
    own = [a.key for a in cv.ATTRIBUTES if not a.key.startswith(foreign)]
    own += [m.name for m in cv.METRICS if not m.name.startswith(foreign)]
    assert own and all(pattern.match(name) for name in own), own


def test_genai_buckets_follow_the_spec() -> None:
    spec = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
    assert cv.metric_def(cv.Metric.GEN_AI_OPERATION_DURATION).buckets == spec
    assert tuple(4**i for i in range(14)) == cv.GEN_AI_TOKEN_BUCKETS
    assert cv.metric_def(cv.Metric.GEN_AI_TOKEN_USAGE).unit == "{token}"


def test_prover_results_are_a_closed_set() -> None:
    assert {r.value for r in cv.ProverResult} == {"proved", "refuted", "unknown", "timeout", "error"}


def test_the_schema_url_is_a_published_semconv_release() -> None:
    from opentelemetry.semconv.schemas import Schemas

    assert cv.SCHEMA_URL in {schema.value for schema in Schemas}
    assert cv.SCHEMA_URL.endswith("/" + cv.SEMCONV_VERSION)


def test_http_names_are_the_stable_http_conventions() -> None:
    from opentelemetry.semconv._incubating.metrics import http_metrics as incubating_http_metrics
    from opentelemetry.semconv.attributes import http_attributes, network_attributes, url_attributes
    from opentelemetry.semconv.metrics import http_metrics

    assert cv.HTTP_REQUEST_METHOD == http_attributes.HTTP_REQUEST_METHOD
    assert cv.HTTP_RESPONSE_STATUS_CODE == http_attributes.HTTP_RESPONSE_STATUS_CODE
    assert cv.HTTP_ROUTE == http_attributes.HTTP_ROUTE
    assert (cv.URL_PATH, cv.URL_SCHEME) == (url_attributes.URL_PATH, url_attributes.URL_SCHEME)
    assert cv.NETWORK_PROTOCOL_VERSION == network_attributes.NETWORK_PROTOCOL_VERSION
    duration, active = cv.HTTP_SERVER_METRICS
    assert (duration.name, duration.unit) == (http_metrics.HTTP_SERVER_REQUEST_DURATION, "s")
    assert active.name == incubating_http_metrics.HTTP_SERVER_ACTIVE_REQUESTS


def test_every_name_names_the_convention_it_follows() -> None:
    assert {a.convention for a in cv.ATTRIBUTES if a.key.startswith("gen_ai.")} == {cv.Convention.GEN_AI}
    assert {a.convention for a in cv.ATTRIBUTES if a.key.startswith("hakgal.")} == {cv.Convention.HAKGAL}
    assert {m.convention for m in cv.METRICS if m.name.startswith("otel_hakgal.")} == {cv.Convention.LAYER}
    assert next(a for a in cv.ATTRIBUTES if a.key == cv.Attr.ERROR_TYPE).convention == cv.Convention.SEMCONV
    assert next(s for s in cv.SPANS if s.name == cv.SpanName.LLM).convention == cv.Convention.GEN_AI
    assert all(cv.SEMCONV_VERSION in c for c in (cv.Convention.SEMCONV, cv.Convention.GEN_AI))
    assert all(m.convention for m in (*cv.HTTP_SERVER_METRICS, *cv.PROCESS_METRICS))
