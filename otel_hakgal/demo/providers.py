"""LLM providers: DeepSeek and Mistral through the ``openai`` SDK, Gemini through REST ``generateContent``.

As in HAK-GAL, a provider never raises: a failed call comes back as an
:class:`LLMReply` with ``error`` set, and its span is marked with
``fail(error_type)``. :class:`ProviderChain` falls back along the providers.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import openai

import otel_hakgal as hg
from otel_hakgal.conventions import ErrorType, GenAIOperation

Messages = list[dict[str, str]]
DEMO_API_KEY = "sk-demo-not-a-real-key"


@dataclass(frozen=True)
class LLMReply:
    provider: str
    text: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class _Answer:
    text: str
    input_tokens: int | None
    output_tokens: int | None
    finish_reasons: list[str]
    response_model: str | None
    response_id: str | None
    cached_tokens: int | None = None  # input tokens the provider's prompt cache served


class ProviderFailure(Exception):
    """Raised inside a provider's ``_request`` only; turned into an error reply by ``complete``.

    ``error_type`` follows the GenAI conventions: the HTTP status code of a failed request
    (``"503"``), the class name of the exception behind a failure (``"APIConnectionError"``), or a
    fixed code (``timeout``, ``malformed_response``).
    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    @classmethod
    def http(cls, status_code: int, message: str) -> ProviderFailure:
        return cls(str(int(status_code)), message)

    @classmethod
    def caused_by(cls, error: BaseException, message: str) -> ProviderFailure:
        return cls(type(error).__qualname__, message)


class LLMProvider(ABC):
    name: str  # short name used in the API's llmStatus and the simulator's paths
    provider_name: str  # gen_ai.provider.name
    model: str
    api_key_env: str  # where the key comes from, as in HAK-GAL (the demo key when unset)
    operation: str = GenAIOperation.CHAT

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, max_tokens: int = 256, temperature: float = 0.0):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.temperature = temperature
        url = urlsplit(self.base_url)
        self.server_address = url.hostname or "127.0.0.1"
        self.server_port = url.port or (443 if url.scheme == "https" else 80)
        self.status = "online"

    def api_key(self) -> str:
        return os.environ.get(self.api_key_env) or DEMO_API_KEY

    def complete(self, messages: Messages, *, accept: Callable[[str], bool] | None = None) -> LLMReply:
        """One call. ``accept`` checks the text; a rejected text counts as a malformed response."""
        with hg.llm_call(
            self.provider_name,
            self.model,
            operation=self.operation,
            server_address=self.server_address,
            server_port=self.server_port,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
        ) as call:
            try:
                answer = self._request(messages, hg.propagation_headers())
            except ProviderFailure as failure:
                call.fail(failure.error_type, failure.message)
                self.status = f"error: {failure.message}"
                return LLMReply(self.name, None, f"{self.name}: {failure.message}")
            call.record_usage(
                answer.input_tokens,
                answer.output_tokens,
                finish_reasons=answer.finish_reasons,
                response_model=answer.response_model,
                response_id=answer.response_id,
                cache_read_tokens=answer.cached_tokens,
            )
            # Per the GenAI JSON schemas: the system prompt apart, parts, finish_reason (see hg.genai).
            call.record_messages(messages, [answer.text], finish_reasons=answer.finish_reasons)
            if accept is not None and not accept(answer.text):
                call.fail(ErrorType.MALFORMED_RESPONSE, "the reply has not the expected form")
                self.status = "error: malformed reply"
                return LLMReply(self.name, answer.text, f"{self.name}: the reply has not the expected form")
            self.status = "online"
            return LLMReply(self.name, answer.text)

    @abstractmethod
    def _request(self, messages: Messages, headers: dict[str, str]) -> _Answer:
        """Send the request; raise :class:`ProviderFailure` on any failure."""


class OpenAICompatibleProvider(LLMProvider):
    """A provider with an OpenAI-compatible API, called through the ``openai`` SDK."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        # No SDK retries: falling back to the next provider is HAK-GAL's retry.
        self._client = openai.OpenAI(
            base_url=self.base_url, api_key=self.api_key(), timeout=self.timeout_s, max_retries=0
        )

    def _request(self, messages: Messages, headers: dict[str, str]) -> _Answer:
        try:
            response = self._client.chat.completions.create(
                model=self.model,
                messages=cast(Any, messages),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                extra_headers=headers,
            )
        except openai.APITimeoutError as error:
            raise ProviderFailure(ErrorType.TIMEOUT, f"no answer within {self.timeout_s:g} s") from error
        except openai.APIStatusError as error:
            # The provider's own message, as HAK-GAL logs it (it may echo secrets: the layer scrubs them).
            raise ProviderFailure.http(error.status_code, f"HTTP {error.status_code}: {error.message}") from error
        except openai.APIConnectionError as error:
            raise ProviderFailure.caused_by(error, f"connection failed: {error}") from error
        except ValueError as error:  # an unparseable body
            raise ProviderFailure(ErrorType.MALFORMED_RESPONSE, f"unreadable response: {error}") from error
        if not response.choices or response.choices[0].message.content is None:
            raise ProviderFailure(ErrorType.MALFORMED_RESPONSE, "response without content")
        usage = response.usage
        return _Answer(
            text=response.choices[0].message.content,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            finish_reasons=[str(choice.finish_reason) for choice in response.choices],
            response_model=response.model,
            response_id=response.id,
            cached_tokens=details.cached_tokens if usage and (details := usage.prompt_tokens_details) else None,
        )


class DeepSeekProvider(OpenAICompatibleProvider):
    name = "deepseek"
    api_key_env = "DEEPSEEK_API_KEY"
    provider_name = "deepseek"
    model = "deepseek-chat"


class MistralProvider(OpenAICompatibleProvider):
    name = "mistral"
    api_key_env = "MISTRAL_API_KEY"
    provider_name = "mistral_ai"
    model = "mistral-large-latest"


class GeminiProvider(LLMProvider):
    """Google's REST ``generateContent`` call, with the standard library's HTTP client."""

    name = "gemini"
    api_key_env = "GEMINI_API_KEY"
    provider_name = "gcp.gemini"
    model = "gemini-1.5-pro-latest"
    operation = GenAIOperation.GENERATE_CONTENT

    def _request(self, messages: Messages, headers: dict[str, str]) -> _Answer:
        system = "\n".join(m["content"] for m in messages if m["role"] == "system")
        body: dict[str, Any] = {
            "contents": [
                {"role": "user", "parts": [{"text": m["content"]}]} for m in messages if m["role"] != "system"
            ],
            "generationConfig": {"temperature": self.temperature, "maxOutputTokens": self.max_tokens},
        }
        if system:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        request = urllib.request.Request(
            f"{self.base_url}/v1beta/models/{self.model}:generateContent",
            data=json.dumps(body).encode("utf-8"),
            headers={"Content-Type": "application/json", "x-goog-api-key": self.api_key(), **headers},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read(4096).decode("utf-8", "replace")
            raise ProviderFailure.http(error.code, f"HTTP {error.code}: {detail}") from error
        except TimeoutError as error:
            raise ProviderFailure(ErrorType.TIMEOUT, f"no answer within {self.timeout_s:g} s") from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise ProviderFailure(ErrorType.TIMEOUT, f"no answer within {self.timeout_s:g} s") from error
            cause = error.reason if isinstance(error.reason, BaseException) else error
            raise ProviderFailure.caused_by(cause, f"connection failed: {error.reason}") from error
        except (ValueError, ConnectionError) as error:
            raise ProviderFailure(ErrorType.MALFORMED_RESPONSE, f"unreadable response: {error}") from error
        try:
            candidate = payload["candidates"][0]
            text = "".join(part["text"] for part in candidate["content"]["parts"])
        except (KeyError, IndexError, TypeError) as error:
            raise ProviderFailure(ErrorType.MALFORMED_RESPONSE, "response without candidates") from error
        usage = payload.get("usageMetadata", {})
        return _Answer(
            text=text,
            input_tokens=usage.get("promptTokenCount"),
            output_tokens=usage.get("candidatesTokenCount"),
            finish_reasons=[str(candidate.get("finishReason", "STOP")).lower()],
            response_model=payload.get("modelVersion"),
            response_id=payload.get("responseId"),
            cached_tokens=usage.get("cachedContentTokenCount"),
        )


class ProviderChain:
    """Providers in fallback order: the first good reply wins."""

    def __init__(self, providers: Sequence[LLMProvider]) -> None:
        if not providers:
            raise ValueError("a provider chain needs at least one provider")
        self.providers = list(providers)

    def complete(self, messages: Messages, *, accept: Callable[[str], bool] | None = None) -> LLMReply:
        failures: list[str] = []
        for provider in self.providers:
            reply = provider.complete(messages, accept=accept)
            if reply.ok:
                return reply
            failures.append(reply.error or provider.name)
        return LLMReply("none", None, "all providers failed: " + "; ".join(failures))

    def status(self) -> dict[str, Any]:
        """The API's ``llmStatus`` block."""
        return {
            "llm_count": len(self.providers),
            "llm_active": sum(1 for p in self.providers if p.status == "online"),
            "llm_providers": [{"name": p.name, "model": p.model, "status": p.status} for p in self.providers],
        }


@dataclass(frozen=True)
class Endpoints:
    """Where the providers and the oracle live; all on the simulator unless configured otherwise."""

    deepseek: str
    mistral: str
    gemini: str
    oracle: str

    @classmethod
    def on(cls, base_url: str) -> Endpoints:
        base = base_url.rstrip("/")
        return cls(f"{base}/deepseek/v1", f"{base}/mistral/v1", f"{base}/gemini", f"{base}/wolfram/v1/result")


def standard_chain(endpoints: Endpoints, *, timeout_s: float = 10.0) -> ProviderChain:
    """HAK-GAL's order: DeepSeek, then Mistral, then Gemini."""
    return ProviderChain(
        [
            DeepSeekProvider(endpoints.deepseek, timeout_s=timeout_s),
            MistralProvider(endpoints.mistral, timeout_s=timeout_s),
            GeminiProvider(endpoints.gemini, timeout_s=timeout_s),
        ]
    )
