"""A loopback stand-in for the LLM providers and the Wolfram-style oracle.

Endpoints (all on 127.0.0.1):

- ``POST /deepseek/v1/chat/completions`` and ``POST /mistral/v1/chat/completions``:
  OpenAI-compatible chat completions with token usage.
- ``POST /gemini/v1beta/models/{model}:generateContent``: Gemini's REST shape.
- ``GET /wolfram/v1/result?i=<query>``: short plain-text answers, 501 when unknown.
- ``POST /_control/faults`` ``{"provider", "kind", "times", "delay_s"}``,
  ``DELETE /_control/faults``, ``GET /_control/requests``: fault injection and
  the log of received requests (with their ``traceparent``).

Faults per provider: ``latency`` (answer late), ``5xx`` (HTTP 503), ``timeout``
(hang until the client gives up), ``malformed`` (a truncated JSON body) and
``garbage`` (valid envelope, prose instead of logic).

Environment (read by :meth:`LLMSimulator.apply_env_faults`, which the API's
embedded simulator calls): ``HAKGAL_SIM_FAULT`` (a fault kind, or a comma list
of kinds that share the rate evenly; ``error`` means ``5xx``),
``HAKGAL_SIM_FAULT_RATE`` (share of calls hit, default 1.0),
``HAKGAL_SIM_FAULT_PROVIDERS`` (comma list, default the three LLMs),
``HAKGAL_SIM_FAULT_DELAY_S``.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from otel_hakgal.demo.responder import ORACLE_ANSWERS, count_tokens, respond

PROVIDERS: tuple[str, ...] = ("deepseek", "mistral", "gemini", "oracle")
LLM_PROVIDERS: tuple[str, ...] = PROVIDERS[:3]
FAULT_ENV = "HAKGAL_SIM_FAULT"
FAULT_RATE_ENV = "HAKGAL_SIM_FAULT_RATE"
FAULT_PROVIDERS_ENV = "HAKGAL_SIM_FAULT_PROVIDERS"
FAULT_DELAY_ENV = "HAKGAL_SIM_FAULT_DELAY_S"
DEFAULT_HANG_S = 30.0
POLL_INTERVAL_S = 0.05  # how fast stop() takes effect
_GEMINI_PATH = re.compile(r"^/gemini/v1beta/models/(?P<model>[^/:]+):generateContent$")
_CHAT_PATH = re.compile(r"^/(?P<provider>deepseek|mistral)/v1/chat/completions$")


class FaultKind(StrEnum):
    LATENCY = "latency"
    SERVER_ERROR = "5xx"
    TIMEOUT = "timeout"
    MALFORMED = "malformed"
    GARBAGE = "garbage"
    AUTH = "401"  # rejects the API key, echoing it back as real providers do


@dataclass
class Fault:
    kind: FaultKind
    times: int | None = 1  # how many requests it hits; None: until cleared
    delay_s: float = 0.0  # latency: added delay; timeout: how long to hang (default DEFAULT_HANG_S)
    rate: float = 1.0  # share of requests it hits (a miss does not use up ``times``)


@dataclass(frozen=True)
class SeenRequest:
    provider: str
    path: str
    traceparent: str | None
    fault: str | None


class LLMSimulator:
    """Runs in a daemon thread: ``with LLMSimulator() as sim:`` or ``start()`` / ``stop()``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, list[Fault]] = {}
        self._seen: list[SeenRequest] = []
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self._response_ids = 0
        self._cached_prompts: set[tuple[str, str]] = set()  # (provider, system prompt) in the prompt cache
        self._random = random.Random(0)  # seeded: fault rates give the same sequence every run

    # --- lifecycle ---

    def start(self) -> LLMSimulator:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, args=(POLL_INTERVAL_S,), name="llm-simulator", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases requests that hang on a timeout fault
        if self._thread is not None:
            self._server.shutdown()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> LLMSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses ---

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- fault injection and inspection ---

    def inject(
        self, provider: str, kind: FaultKind | str, *, times: int | None = 1, delay_s: float = 0.0, rate: float = 1.0
    ) -> None:
        """Make the next ``times`` requests to ``provider`` (a ``rate`` share of them) fail as ``kind`` says."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; known: {', '.join(PROVIDERS)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, not {rate}")
        fault = Fault(FaultKind("5xx" if kind == "error" else kind), times, delay_s, rate)
        with self._lock:
            self._faults.setdefault(provider, []).append(fault)

    def apply_env_faults(self, env: Mapping[str, str] = os.environ) -> None:
        """Inject the lasting fault described by ``$HAKGAL_SIM_FAULT`` and friends, if any."""
        kinds = [kind.strip() for kind in env.get(FAULT_ENV, "").split(",") if kind.strip()]
        if not kinds:
            return
        rate = float(env.get(FAULT_RATE_ENV, "1.0"))
        delay_s = float(env.get(FAULT_DELAY_ENV, "0"))
        providers = [p.strip() for p in env.get(FAULT_PROVIDERS_ENV, ",".join(LLM_PROVIDERS)).split(",") if p.strip()]
        for provider in providers:
            self.inject_mix(provider, kinds, rate, delay_s=delay_s)

    def inject_mix(self, provider: str, kinds: Sequence[FaultKind | str], rate: float, *, delay_s: float = 0.0) -> None:
        """Make a ``rate`` share of all later requests to ``provider`` fail, split evenly among ``kinds``."""
        for kind in kinds:
            self.inject(provider, kind, times=None, delay_s=delay_s, rate=rate / len(kinds))

    def clear_faults(self, provider: str | None = None) -> None:
        with self._lock:
            if provider is None:
                self._faults.clear()
            else:
                self._faults.pop(provider, None)

    def requests(self, provider: str | None = None) -> list[SeenRequest]:
        with self._lock:
            return [seen for seen in self._seen if provider is None or seen.provider == provider]

    def clear_requests(self) -> None:
        with self._lock:
            self._seen.clear()

    def _take_fault(self, provider: str) -> Fault | None:
        with self._lock:
            queue = self._faults.get(provider, [])
            if not queue:
                return None
            # One draw per request, and the queued faults' rates are consecutive slices of it:
            # several kinds at 5% each hit 10% of the calls together, never one call twice.
            draw = self._random.random() if queue[0].rate < 1.0 else 0.0
            thresholds = itertools.accumulate(queued.rate for queued in queue)
            index = next((i for i, threshold in enumerate(thresholds) if draw < threshold), None)
            if index is None:
                return None
            fault = queue[index]
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    queue.pop(index)
            return fault

    def _log(self, provider: str, path: str, traceparent: str | None, fault: Fault | None) -> None:
        with self._lock:
            self._seen.append(SeenRequest(provider, path, traceparent, fault.kind if fault else None))

    def _next_response_id(self) -> str:
        with self._lock:
            self._response_ids += 1
            return f"sim-{self._response_ids:06d}"

    def _cached_tokens(self, provider: str, system: str) -> int:
        """Tokens of ``system`` the provider's prompt cache serves: all of them once it has seen the prompt."""
        with self._lock:
            seen = (provider, system) in self._cached_prompts
            self._cached_prompts.add((provider, system))
        return count_tokens(system) if seen and system else 0

    def _wait(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    # --- model endpoints ---

    def chat_completion(self, provider: str, body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        messages = body.get("messages") or []
        system = next((str(m.get("content", "")) for m in messages if m.get("role") == "system"), "")
        user = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")
        text = _GARBAGE if fault and fault.kind is FaultKind.GARBAGE else respond(system, user, provider)
        prompt_tokens = sum(count_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = count_tokens(text)
        return {
            "id": f"chatcmpl-{self._next_response_id()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "unknown")),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": self._cached_tokens(provider, system)},
            },
        }

    def generate_content(self, model: str, body: dict[str, Any], fault: Fault | None) -> dict[str, Any]:
        def texts(content: Any) -> str:
            return "\n".join(str(part.get("text", "")) for part in (content or {}).get("parts", []))

        system = texts(body.get("systemInstruction"))
        user = "\n".join(texts(content) for content in body.get("contents", []))
        text = _GARBAGE if fault and fault.kind is FaultKind.GARBAGE else respond(system, user, "gemini")
        prompt_tokens = count_tokens(system) + count_tokens(user)
        output_tokens = count_tokens(text)
        return {
            "candidates": [
                {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens,
                "cachedContentTokenCount": self._cached_tokens("gemini", system),
            },
            "modelVersion": model,
            "responseId": self._next_response_id(),
        }


_GARBAGE = "I'm sorry, as a language model I would rather not answer in formulas today."


def _handler_for(simulator: LLMSimulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/_control/requests":
                self._send_json(200, {"requests": [asdict(seen) for seen in simulator.requests()]})
            elif url.path == "/wolfram/v1/result":
                self._oracle(parse_qs(url.query).get("i", [""])[0])
            else:
                self._send_json(404, {"error": f"no such endpoint: {url.path}"})

        def do_DELETE(self) -> None:
            if urlsplit(self.path).path == "/_control/faults":
                simulator.clear_faults()
                self._send_json(200, {"status": "cleared"})
            else:
                self._send_json(404, {"error": "no such endpoint"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            except ValueError:
                self._send_json(400, {"error": {"message": "request body is not JSON"}})
                return
            if path == "/_control/faults":
                self._control(body)
            elif chat := _CHAT_PATH.match(path):
                self._model_call(chat["provider"], lambda f: simulator.chat_completion(chat["provider"], body, f))
            elif gemini := _GEMINI_PATH.match(path):
                self._model_call("gemini", lambda f: simulator.generate_content(gemini["model"], body, f))
            else:
                self._send_json(404, {"error": {"message": f"no such endpoint: {path}"}})

        def _control(self, body: dict[str, Any]) -> None:
            try:
                simulator.inject(
                    str(body["provider"]),
                    str(body["kind"]),
                    times=body.get("times", 1),
                    delay_s=float(body.get("delay_s", 0.0)),
                )
            except (KeyError, ValueError) as error:
                self._send_json(400, {"error": f"bad fault: {error}"})
                return
            self._send_json(200, {"status": "injected"})

        def _model_call(self, provider: str, answer: Any) -> None:
            fault = self._apply_fault(provider)
            if fault is None or fault.kind in (FaultKind.LATENCY, FaultKind.GARBAGE):
                self._send_json(200, answer(fault))

        def _oracle(self, question: str) -> None:
            fault = self._apply_fault("oracle")
            if fault is not None and fault.kind not in (FaultKind.LATENCY, FaultKind.GARBAGE):
                return
            answer = ORACLE_ANSWERS.get(question.strip())
            if answer is None:
                self._send_text(501, "Wolfram|Alpha did not understand your input")
            else:
                self._send_text(200, answer)

        def _apply_fault(self, provider: str) -> Fault | None:
            """Log the request and act out its fault; returns the fault (the caller answers unless handled)."""
            fault = simulator._take_fault(provider)
            simulator._log(provider, self.path, self.headers.get("traceparent"), fault)
            if fault is None:
                return None
            if fault.kind is FaultKind.LATENCY:
                simulator._wait(fault.delay_s)
            elif fault.kind is FaultKind.SERVER_ERROR:
                self._send_json(503, {"error": {"message": f"{provider} is overloaded (simulated)", "code": 503}})
            elif fault.kind is FaultKind.AUTH:
                key = self.headers.get("x-goog-api-key") or self.headers.get("Authorization") or ""
                message = f"Incorrect API key provided: {key.removeprefix('Bearer ')}"
                self._send_json(401, {"error": {"message": message, "code": "invalid_api_key"}})
            elif fault.kind is FaultKind.TIMEOUT:
                simulator._wait(fault.delay_s or DEFAULT_HANG_S)
                self.close_connection = True
            elif fault.kind is FaultKind.MALFORMED:
                self._send_raw(200, "application/json", b'{"choices": [{"message": {"content": "Haupt')
            return fault

        def _send_json(self, status: int, payload: object) -> None:
            self._send_raw(status, "application/json", json.dumps(payload).encode("utf-8"))

        def _send_text(self, status: int, text: str) -> None:
            self._send_raw(status, "text/plain; charset=utf-8", text.encode("utf-8"))

        def _send_raw(self, status: int, content_type: str, payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout fault)
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the demo prints its own output

    return Handler
