"""Talking to a model endpoint: OpenAI-compatible chat completions or the Anthropic Messages API.

Standard library only (``urllib``), so the planning service gains no dependency. One
:class:`ModelClient` holds one conversation and asks for JSON that follows a schema:

* Structured output first: ``response_format: json_schema`` (chat completions), a forced tool
  whose input is the schema (Anthropic). A 400 that rejects that form falls back, once per
  conversation, to JSON mode (``response_format: json_object``) and then to the schema written in
  the prompt; the fallback is kept for the rest of the conversation.
* Every call is bounded (``timeout`` seconds, default 120). 429, 5xx and Anthropic's 529 are
  retried with exponential backoff, honouring ``Retry-After``; a 429 that says the quota is used up
  is not retried; 401/403 is a permission error naming the variable that holds the key.
* Every call is reported to an observer (provider, model, purpose, attempt, status, outcome,
  duration, tokens, output mode) and the key is in none of it: :class:`Secrets` scrubs it, and
  long enough pieces of it, from every message and error text, also when the endpoint echoes it.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 3
DEFAULT_MAX_TOKENS = 8192
#: Longest wait between two attempts, whatever ``Retry-After`` asks.
MAX_BACKOFF = 60.0
#: How much of an error body an error message quotes.
EXCERPT = 300
ANTHROPIC_VERSION = "2023-06-01"
ENV_PREFIX = "HARNESS_LLM_"
DEFAULT_KEY_ENV = "HARNESS_LLM_API_KEY"
BASE_URLS = {"openai": "https://api.openai.com/v1", "anthropic": "https://api.anthropic.com"}
TOOL_NAME = "submit_plan"

Observer = Callable[[dict[str, Any]], None]


class Provider(StrEnum):
    openai = "openai"  # any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM, llama.cpp)
    anthropic = "anthropic"  # the Anthropic Messages API


class Mode(StrEnum):
    """How the answer is asked to be JSON, strongest first."""

    schema = "schema"  # response_format json_schema / a forced tool
    json = "json"  # response_format json_object (chat completions only)
    prompt = "prompt"  # the schema in the prompt, JSON read from the text


class FailureKind(StrEnum):
    config = "config"  # nothing to call: no model, no key, a bad URL
    permission = "permission"  # 401/403
    quota = "quota"  # the account's quota or credit is used up
    timeout = "timeout"  # no answer in time, after the retries
    unavailable = "unavailable"  # 429/5xx/529/connection errors, after the retries
    rejected = "rejected"  # another 4xx: the endpoint refused the request
    unusable = "unusable"  # an answer that is no plan, after the repair rounds


class ModelError(Exception):
    """A call that failed for good. The message never holds the key (it was scrubbed)."""

    def __init__(self, kind: FailureKind, message: str, *, status: int | None = None) -> None:
        self.kind = kind
        self.status = status
        super().__init__(message)


class Secrets:
    """Scrubs secrets from text: each whole, and every run of ``PIECE`` or more of its characters
    (an endpoint may echo a key truncated or masked around its ends)."""

    PIECE = 8

    def __init__(self, *values: str | None) -> None:
        self.values = [v for v in values if v and len(v) >= 4]

    def __call__(self, text: str) -> str:
        for value in self.values:
            text = text.replace(value, "[redacted]")
            if len(value) >= self.PIECE:
                for start in range(len(value) - self.PIECE + 1):
                    piece = value[start : start + self.PIECE]
                    if piece in text:
                        text = text.replace(piece, "[redacted]")
        return text


@dataclass(frozen=True)
class Settings:
    """Where and how to call the model. ``api_key`` is read from the environment variable
    ``api_key_env`` and is never printed (``repr`` leaves it out)."""

    provider: Provider
    model: str
    base_url: str
    api_key_env: str = DEFAULT_KEY_ENV
    api_key: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    max_tokens: int = DEFAULT_MAX_TOKENS
    backoff: float = 1.0  # seconds before the first retry; doubled each time

    @property
    def host(self) -> str:
        return urllib.parse.urlsplit(self.base_url).netloc

    @property
    def loopback(self) -> bool:
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        return host in ("localhost", "::1") or host.startswith("127.")


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(ENV_PREFIX + name, "").strip()
    return value or None


def resolve(config: Mapping[str, Any] | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Settings from the caller's ``config`` (context.llm), then ``HARNESS_LLM_*``, then defaults.

    ModelError(config) names what is missing: the model, the key (needed except on loopback,
    where local servers such as Ollama take none), a usable base URL.
    """
    cfg = dict(config or {})

    def pick(key: str, env_name: str) -> Any:
        value = cfg.get(key)
        return value if value not in (None, "") else _env(environ, env_name)

    provider_name = str(pick("provider", "PROVIDER") or "openai").lower()
    try:
        provider = Provider(provider_name)
    except ValueError:
        raise ModelError(
            FailureKind.config,
            f"unknown LLM provider {provider_name!r}: use 'openai' (any chat-completions endpoint) or 'anthropic'",
        ) from None
    model = pick("model", "MODEL")
    if not model:
        raise ModelError(FailureKind.config, "no model named: set HARNESS_LLM_MODEL, or planner.model in harness.yaml")
    base_url = str(pick("base_url", "BASE_URL") or BASE_URLS[provider]).rstrip("/")
    if urllib.parse.urlsplit(base_url).scheme not in ("http", "https"):
        raise ModelError(FailureKind.config, f"the LLM base URL must start with http:// or https:// (got {base_url!r})")
    key_env = str(cfg.get("api_key_env") or DEFAULT_KEY_ENV)
    api_key = environ.get(key_env, "").strip() or None
    settings = Settings(
        provider=provider,
        model=str(model),
        base_url=base_url,
        api_key_env=key_env,
        api_key=api_key,
        timeout=float(cfg.get("timeout") or _env(environ, "TIMEOUT") or DEFAULT_TIMEOUT),
        retries=int(
            cfg["retries"] if cfg.get("retries") is not None else (_env(environ, "RETRIES") or DEFAULT_RETRIES)
        ),
        max_tokens=int(cfg.get("max_tokens") or DEFAULT_MAX_TOKENS),
        backoff=float(cfg["backoff"]) if cfg.get("backoff") is not None else 1.0,
    )
    if api_key is None and not settings.loopback:
        raise ModelError(
            FailureKind.config,
            f"no API key for {settings.host}: set {key_env} (a local server on 127.0.0.1 needs none)",
        )
    return settings


@dataclass(frozen=True)
class Reply:
    """One answer: its JSON text (or the forced tool's input, dumped) and what it cost."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    mode: Mode = Mode.schema
    tool_use_id: str | None = None


class _HTTPFailure(Exception):
    def __init__(self, status: int | None, body: str, retry_after: float | None, timed_out: bool = False) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.timed_out = timed_out
        super().__init__(f"HTTP {status}")


def retry_after(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def post_json(url: str, headers: dict[str, str], body: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST ``body``; the decoded JSON answer, or _HTTPFailure (status None: no answer at all)."""
    data = json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"content-type": "application/json", **headers}
    )
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            chunks: list[bytes] = []
            while chunk := response.read(65536):
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _HTTPFailure(None, "the answer took longer than the timeout", None, timed_out=True)
    except urllib.error.HTTPError as exc:
        text = exc.read().decode("utf-8", "replace") if exc.fp is not None else ""
        raise _HTTPFailure(exc.code, text, retry_after(exc.headers)) from None
    except TimeoutError:
        raise _HTTPFailure(None, f"no answer within {timeout:g} s", None, timed_out=True) from None
    except urllib.error.URLError as exc:
        timed_out = isinstance(exc.reason, TimeoutError)
        raise _HTTPFailure(None, f"cannot reach the endpoint: {exc.reason}", None, timed_out=timed_out) from None
    except (ConnectionError, OSError) as exc:
        raise _HTTPFailure(None, f"connection failed: {exc}", None) from None
    raw = b"".join(chunks).decode("utf-8", "replace")
    try:
        answer = json.loads(raw)
    except ValueError:
        raise _HTTPFailure(200, "the endpoint answered something that is not JSON: " + raw[:EXCERPT], None) from None
    if not isinstance(answer, dict):
        raise _HTTPFailure(200, "the endpoint answered JSON that is not an object", None)
    return answer


_QUOTA = re.compile(r"insufficient_quota|quota|billing|credit balance|exceeded your current", re.IGNORECASE)
_FORMAT = re.compile(r"response_format|json_schema|json_object|structured|tool_choice|tools?\b|format", re.IGNORECASE)


def _error_text(body: str) -> str:
    """The endpoint's own error message when it sent the usual ``{"error": {"message": ...}}``."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()[:EXCERPT]
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and error.get("message"):
        kind = error.get("type") or error.get("code")
        return (f"{kind}: " if kind else "") + str(error["message"])[:EXCERPT]
    return body.strip()[:EXCERPT]


Post = Callable[[str, dict[str, str], dict[str, Any], float], dict[str, Any]]


class ModelClient:
    """One conversation with one endpoint. ``ask`` sends the conversation so far plus a user turn
    and returns the JSON answer's text; the answer is kept, so a repair turn follows it."""

    def __init__(
        self,
        settings: Settings,
        system: str,
        schema: dict[str, Any],
        *,
        observe: Observer | None = None,
        post: Post = post_json,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.system = system
        self.schema = schema
        self.observe = observe or (lambda _d: None)
        self.post = post
        self.sleep = sleep or time.sleep
        self.rng = rng or random.Random()
        self.scrub = Secrets(settings.api_key)
        self.mode = Mode.schema
        self.messages: list[dict[str, Any]] = []
        self.calls = 0
        self._last: Reply | None = None

    # -- the conversation --------------------------------------------------------------------------
    def ask(self, text: str, *, purpose: str) -> Reply:
        """Send ``text`` as the next user turn; the answer is added to the conversation."""
        self.messages.append(self._user_turn(text))
        while True:
            try:
                reply = self._call(purpose)
            except _FormatRejected:
                continue  # self.mode was lowered: ask again in the weaker form
            self.messages.append(self._assistant_turn(reply))
            self._last = reply
            return reply

    def _user_turn(self, text: str) -> dict[str, Any]:
        last = self._last
        if self.settings.provider is Provider.anthropic and last is not None and last.tool_use_id:
            # the forced tool was called: the next user turn must answer that call
            return {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": last.tool_use_id, "content": text, "is_error": True}
                ],
            }
        return {"role": "user", "content": text}

    def _assistant_turn(self, reply: Reply) -> dict[str, Any]:
        if reply.tool_use_id:
            block = {"type": "tool_use", "id": reply.tool_use_id, "name": TOOL_NAME, "input": json.loads(reply.text)}
            return {"role": "assistant", "content": [block]}
        return {"role": "assistant", "content": reply.text}

    def _system_text(self) -> str:
        if self.mode is Mode.schema:
            return self.system
        return (
            self.system
            + "\n\nAnswer with one JSON object and nothing else, following this JSON Schema:\n"
            + json.dumps(self.schema)
        )

    # -- one request, with retries -----------------------------------------------------------------
    def _request(self) -> tuple[str, dict[str, str], dict[str, Any]]:
        s = self.settings
        if s.provider is Provider.anthropic:
            base = s.base_url[: -len("/v1")] if s.base_url.endswith("/v1") else s.base_url
            headers = {"anthropic-version": ANTHROPIC_VERSION}
            if s.api_key:
                headers["x-api-key"] = s.api_key
            body: dict[str, Any] = {
                "model": s.model,
                "max_tokens": s.max_tokens,
                "system": self._system_text(),
                "messages": self.messages if self.mode is Mode.schema else _untooled(self.messages),
            }
            if self.mode is Mode.schema:
                body["tools"] = [{"name": TOOL_NAME, "description": "Submit the plan.", "input_schema": self.schema}]
                body["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
            return base + "/v1/messages", headers, body
        headers = {"authorization": f"Bearer {s.api_key}"} if s.api_key else {}
        messages = [{"role": "system", "content": self._system_text()}, *self.messages]
        body = {"model": s.model, "messages": messages}
        if self.mode is Mode.schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "plan", "strict": True, "schema": self.schema},
            }
        elif self.mode is Mode.json:
            body["response_format"] = {"type": "json_object"}
        return s.base_url + "/chat/completions", headers, body

    def _call(self, purpose: str) -> Reply:
        s = self.settings
        attempt = 0
        while True:
            attempt += 1
            self.calls += 1
            url, headers, body = self._request()
            started = time.monotonic()
            record: dict[str, Any] = {
                "provider": s.provider.value,
                "model": s.model,
                "host": s.host,
                "purpose": purpose,
                "call": self.calls,
                "attempt": attempt,
                "mode": self.mode.value,
            }
            try:
                answer = self.post(url, headers, body, s.timeout)
            except _HTTPFailure as failure:
                record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
                wait = self._after_failure(failure, attempt, record)
                self.sleep(wait)
                continue
            record["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
            try:
                reply = self._parse(answer)
            except ModelError as exc:
                record.update(status=200, outcome="unusable", error=self.scrub(str(exc)))
                self.observe(record)
                raise
            record.update(status=200, outcome="ok", tokens_in=reply.tokens_in, tokens_out=reply.tokens_out)
            self.observe(record)
            return reply

    def _after_failure(self, failure: _HTTPFailure, attempt: int, record: dict[str, Any]) -> float:
        """Report the failure; the seconds to wait before retrying. Raises _FormatRejected (the
        turn is asked again in a weaker output mode) or ModelError (it is over)."""
        s = self.settings
        status = failure.status
        detail = self.scrub(_error_text(failure.body) if status else failure.body)
        record.update(status=status, error=detail)
        where = f"{s.provider.value} endpoint {s.host} (model {s.model})"
        if status == 400 and self.mode is not Mode.prompt and _FORMAT.search(failure.body):
            record["outcome"] = "format_rejected"
            self.mode = Mode.json if (self.mode is Mode.schema and s.provider is Provider.openai) else Mode.prompt
            self.observe(record)
            raise _FormatRejected
        if status in (401, 403):
            record["outcome"] = "permission"
            self.observe(record)
            raise ModelError(
                FailureKind.permission,
                f"the {where} refused the key in {s.api_key_env} ({status}): {detail}",
                status=status,
            )
        quota = status in (429, 400, 402) and bool(_QUOTA.search(failure.body))
        if quota:
            record["outcome"] = "quota"
            self.observe(record)
            raise ModelError(
                FailureKind.quota, f"the {where} says the quota is used up ({status}): {detail}", status=status
            )
        transient = failure.timed_out or status is None or status in (408, 409, 429, 529) or (status or 0) >= 500
        if not transient:
            record["outcome"] = "rejected"
            self.observe(record)
            raise ModelError(
                FailureKind.rejected, f"the {where} rejected the request ({status}): {detail}", status=status
            )
        record["outcome"] = "timeout" if failure.timed_out else "retry"
        if attempt > s.retries:
            record["outcome"] = "timeout" if failure.timed_out else "unavailable"
            self.observe(record)
            kind = FailureKind.timeout if failure.timed_out else FailureKind.unavailable
            what = (
                f"no answer within {s.timeout:g} s"
                if failure.timed_out
                else (f"HTTP {status}" if status else "no connection")
            )
            raise ModelError(
                kind,
                f"the {where} failed {attempt} time(s), last: {what}: {detail}",
                status=status,
            )
        wait = failure.retry_after
        if wait is None:
            wait = s.backoff * (2 ** (attempt - 1)) * (0.5 + self.rng.random() / 2)
        record["retry_in"] = round(min(wait, MAX_BACKOFF), 3)
        self.observe(record)
        return min(wait, MAX_BACKOFF)

    # -- answers -----------------------------------------------------------------------------------
    def _parse(self, answer: dict[str, Any]) -> Reply:
        if self.settings.provider is Provider.anthropic:
            usage = answer.get("usage") or {}
            tokens = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
            blocks = [b for b in answer.get("content") or [] if isinstance(b, dict)]
            for block in blocks:
                if block.get("type") == "tool_use" and isinstance(block.get("input"), dict):
                    return Reply(json.dumps(block["input"]), *tokens, mode=self.mode, tool_use_id=str(block.get("id")))
            text = "".join(str(b.get("text") or "") for b in blocks if b.get("type") == "text")
            return Reply(text, *tokens, mode=self.mode)
        usage = answer.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        choices = answer.get("choices") or []
        message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
        if not isinstance(message, dict):
            raise ModelError(FailureKind.unusable, "the endpoint's answer has no choices[0].message")
        if message.get("refusal"):
            raise ModelError(
                FailureKind.unusable, "the model refused: " + self.scrub(str(message["refusal"]))[:EXCERPT]
            )
        return Reply(str(message.get("content") or ""), *tokens, mode=self.mode)


class _FormatRejected(Exception):
    """The endpoint refused the output form; the client lowered ``mode`` and asks again."""


def _untooled(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """An Anthropic conversation without tool blocks (after falling back from the forced tool)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        content = m["content"]
        if isinstance(content, list):
            parts = []
            for block in content:
                if block.get("type") == "tool_use":
                    parts.append(json.dumps(block.get("input")))
                elif block.get("type") == "tool_result":
                    parts.append(str(block.get("content")))
                elif block.get("type") == "text":
                    parts.append(str(block.get("text")))
            content = "\n".join(parts)
        out.append({"role": m["role"], "content": content})
    return out


def extract_json(text: str) -> Any:
    """The JSON object in a model's text: the whole text, else a fenced block, else from the first
    ``{`` to the last ``}``. ValueError when there is none."""
    text = text.strip()
    candidates = [text]
    fenced = re.search(r"```(?:json)?\s*\n(.*?)\n\s*```", text, re.DOTALL)
    if fenced:
        candidates.append(fenced.group(1))
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("the answer holds no JSON object")
