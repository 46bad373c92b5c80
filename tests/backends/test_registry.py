import pytest

from otel_hakgal.backends import Backend, available_backends, backend_class, settings_sections


def test_each_module_is_one_backend() -> None:
    assert {"console", "jsonl", "memory", "none", "otlp"} <= set(available_backends())
    for name in available_backends():
        cls = backend_class(name)
        assert issubclass(cls, Backend) and cls.name == name


def test_settings_sections_come_from_backends() -> None:
    assert {"otlp", "jsonl", "console"} <= set(settings_sections())


def test_unknown_backend() -> None:
    with pytest.raises(KeyError):
        backend_class("pigeon")
