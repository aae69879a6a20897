"""Fake model endpoints for the llm planner: OpenAI-compatible chat completions and the Anthropic
Messages API, plain JSON (no streaming), on 127.0.0.1.

A test gives a script: one :class:`Step` per model call, in order (the last one repeats). A step
answers a plan (as the provider's structured output: the message's JSON content, or the forced
tool's input), raw text, or an HTTP error with a body and headers, optionally after a delay.
``reject_format`` answers 400 to any request that asks for structured output, as a server that
does not support it would. Every request is recorded (path, body, headers) for the test to read.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeLLM", "Step", "fake_llm"]


@dataclass
class Step:
    plan: dict[str, Any] | None = None  # the answer's JSON
    text: str | None = None  # or raw text
    status: int = 200
    body: dict[str, Any] | str | None = None  # an error's body
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    tokens: tuple[int, int] = (200, 80)


@dataclass
class FakeLLM:
    provider: str  # openai | anthropic
    steps: list[Step]
    reject_format: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _served: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" + ("/v1" if self.provider == "openai" else "")

    def next_step(self) -> Step:
        with self._lock:
            step = self.steps[min(self._served, len(self.steps) - 1)]
            self._served += 1
            return step

    def structured(self, body: dict[str, Any]) -> bool:
        if self.provider == "openai":
            return (body.get("response_format") or {}).get("type") == "json_schema"
        return bool(body.get("tools"))

    def answer(self, body: dict[str, Any], step: Step) -> dict[str, Any]:
        text = step.text if step.text is not None else json.dumps(step.plan)
        if self.provider == "openai":
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": step.tokens[0], "completion_tokens": step.tokens[1]},
            }
        tools = [t.get("name") for t in body.get("tools") or []]
        if tools and step.plan is not None:
            content: list[dict[str, Any]] = [
                {"type": "tool_use", "id": f"toolu_{self._served}", "name": tools[0], "input": step.plan}
            ]
        else:
            content = [{"type": "text", "text": text}]
        return {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": content,
            "stop_reason": "tool_use" if content[0]["type"] == "tool_use" else "end_turn",
            "usage": {"input_tokens": step.tokens[0], "output_tokens": step.tokens[1]},
        }


def _handler(fake: FakeLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            body = json.loads(raw or b"{}")
            fake.requests.append(
                {"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
            )
            if fake.reject_format and fake.structured(body):
                what = "response_format json_schema" if fake.provider == "openai" else "tools / tool_choice"
                self._send(400, {"error": {"type": "invalid_request_error", "message": f"{what} is not supported"}})
                return
            step = fake.next_step()
            if step.delay:
                time.sleep(step.delay)
            if step.status != 200:
                self._send(step.status, step.body or {"error": {"message": f"status {step.status}"}}, step.headers)
                return
            self._send(200, fake.answer(body, step))

    return Handler


@contextmanager
def fake_llm(provider: str, steps: list[Step], **options: Any) -> Iterator[FakeLLM]:
    fake = FakeLLM(provider, steps, **options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-llm", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
