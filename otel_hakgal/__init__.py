"""otel_hakgal: vendor-neutral OpenTelemetry instrumentation for HAK-GAL.

Configure once with :func:`setup`; instrument with the context managers
(which are also decorators) :func:`command`, :func:`query`, :func:`prover`,
:func:`llm_call`, :func:`cache_lookup` and :func:`step`.
"""

from __future__ import annotations

from otel_hakgal.api import (
    CacheOp,
    CommandOp,
    LLMCallOp,
    Operation,
    ProverOp,
    QueryOp,
    StepOp,
    cache_lookup,
    capture_exception,
    capture_message,
    command,
    current,
    llm_call,
    prover,
    query,
    step,
)
from otel_hakgal.config import Config, ConfigError, load_config
from otel_hakgal.context import (
    ContextThreadPoolExecutor,
    bind_context,
    instrument_flask,
    propagation_headers,
    start_thread,
)
from otel_hakgal.pipeline import BackendStartError, Handle, setup
from otel_hakgal.version import __version__

__all__ = [
    "BackendStartError",
    "CacheOp",
    "CommandOp",
    "Config",
    "ConfigError",
    "ContextThreadPoolExecutor",
    "Handle",
    "LLMCallOp",
    "Operation",
    "ProverOp",
    "QueryOp",
    "StepOp",
    "__version__",
    "bind_context",
    "cache_lookup",
    "capture_exception",
    "capture_message",
    "command",
    "current",
    "instrument_flask",
    "llm_call",
    "load_config",
    "propagation_headers",
    "prover",
    "query",
    "setup",
    "start_thread",
    "step",
]
