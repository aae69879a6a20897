"""Fake model servers for driving the real agent CLIs offline, on 127.0.0.1.

One stdlib HTTP server speaks the Anthropic Messages API (Claude Code) and the OpenAI Responses
API (Codex), both streamed as server-sent events. What it answers is decided from the request,
as a scripted model would:

* the conversation already holds a tool result -> a final text message;
* the request offers the CLI's file-writing tool -> one call of it, writing ``path`` with
  ``content`` (Claude's ``Write`` takes an absolute path: ``workdir`` joined with ``path``);
* otherwise (a title or a probe) -> a short text.

With ``plan`` set, the fake is a planner: Claude Code's ``StructuredOutput`` tool is called with
the plan; every other request (Codex ``--output-schema``, Gemini, chat completions) is answered
with the plan's JSON as text.

``fail_first=N, status=S`` answers the first N model calls with HTTP status S, to test how an
agent's failure is read. Every request is recorded (method, path, model, tool names), without
headers, so no key ever lands in a test's output.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeModel", "fake_model"]


@dataclass
class FakeModel:
    path: str = "hello.txt"
    content: str = "hello from the agent\n"
    workdir: str = ""
    fail_first: int = 0
    status: int = 500
    tokens: tuple[int, int] = (120, 30)
    plan: dict[str, Any] | None = None  # a planner's answer: the structured output asked for
    requests: list[dict[str, Any]] = field(default_factory=list)
    port: int = 0
    _calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def take_call(self) -> int:
        with self._lock:
            self._calls += 1
            return self._calls

    @property
    def model_calls(self) -> int:
        return self._calls


def _sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def _error_body(status: int) -> dict[str, Any]:
    kind = {401: "authentication_error", 429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
    message = {401: "invalid x-api-key", 429: "rate limited"}.get(status, "internal server error")
    return {"type": "error", "error": {"type": kind, "message": message}}


# -- Anthropic Messages ------------------------------------------------------------------------------
_PRIMARY = re.compile(r"Primary working directory: ([^\s\\]+)")


def _primary_directory(body: dict[str, Any]) -> str:
    """The working directory Claude Code states in its system prompt."""
    found = _PRIMARY.search(json.dumps(body.get("system") or ""))
    return found.group(1) if found else ""


def _anthropic(model: FakeModel, body: dict[str, Any]) -> bytes:
    messages = body.get("messages") or []
    tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    done = any(
        isinstance(block, dict) and block.get("type") == "tool_result"
        for m in messages
        if isinstance(m.get("content"), list)
        for block in m["content"]
    )
    name = body.get("model") or "claude-fake"
    tin, tout = model.tokens
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": name,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": tin, "output_tokens": 1},
        },
    }
    if model.plan is not None and "StructuredOutput" in tools and not done:
        block = {"type": "tool_use", "id": "toolu_plan1", "name": "StructuredOutput", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(model.plan)}
        stop = "tool_use"
    elif model.plan is None and "Write" in tools and not done:
        workdir = model.workdir or _primary_directory(body)
        path = f"{workdir.rstrip('/')}/{model.path}" if workdir else model.path
        args = json.dumps({"file_path": path, "content": model.content})
        block = {"type": "tool_use", "id": "toolu_fake1", "name": "Write", "input": {}}
        delta = {"type": "input_json_delta", "partial_json": args}
        stop = "tool_use"
    else:
        text = "Done: the file is written." if done else "Fake title"
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": text}
        stop = "end_turn"
    return _sse(
        [
            ("message_start", start),
            ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block}),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": tout},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


# -- OpenAI Responses --------------------------------------------------------------------------------
def _responses(model: FakeModel, body: dict[str, Any]) -> bytes:
    items = body.get("input") or []
    done = any(
        isinstance(i, dict) and i.get("type") in ("function_call_output", "custom_tool_call_output") for i in items
    )
    tools = {t.get("name"): t for t in body.get("tools") or [] if isinstance(t, dict)}
    name = body.get("model") or "gpt-fake"
    tin, tout = model.tokens
    item: dict[str, Any]
    if model.plan is not None:
        item = {
            "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": json.dumps(model.plan), "annotations": []}],
        }  # fmt: skip
    elif not done and "apply_patch" in tools:
        patch = "*** Begin Patch\n*** Add File: " + model.path + "\n"
        patch += "".join(f"+{line}\n" for line in model.content.splitlines()) + "*** End Patch\n"
        if tools["apply_patch"].get("type") == "custom":
            item = {
                "type": "custom_tool_call",
                "id": "ctc_1",
                "call_id": "call_1",
                "name": "apply_patch",
                "input": patch,
                "status": "completed",
            }
        else:
            item = {
                "type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "apply_patch",
                "arguments": json.dumps({"input": patch}), "status": "completed",
            }  # fmt: skip
    else:
        text = "Done: the file is written." if done else "Fake answer"
        item = {
            "type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}],
        }  # fmt: skip
    response: dict[str, Any] = {
        "id": "resp_1",
        "object": "response",
        "model": name,
        "status": "in_progress",
        "output": [],
    }
    completed = {
        **response,
        "status": "completed",
        "output": [item],
        "usage": {
            "input_tokens": tin,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": tout,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": tin + tout,
        },
    }
    return _sse(
        [
            ("response.created", {"type": "response.created", "response": response}),
            ("response.output_item.added", {"type": "response.output_item.added", "output_index": 0, "item": item}),
            ("response.output_item.done", {"type": "response.output_item.done", "output_index": 0, "item": item}),
            ("response.completed", {"type": "response.completed", "response": completed}),
        ]
    )


# -- OpenAI chat completions -----------------------------------------------------------------------------
_WORKING = re.compile(r"[Ww]orking directory: ([^\s\\<\"]+)")


def _chat(model: FakeModel, body: dict[str, Any]) -> tuple[bytes, str]:
    messages = body.get("messages") or []
    done = any(isinstance(m, dict) and m.get("role") == "tool" for m in messages)
    tools = [t.get("function", {}).get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
    name = body.get("model") or "chat-fake"
    tin, tout = model.tokens
    delta: dict[str, Any]
    if model.plan is not None:  # a planner: the plan's JSON is the whole answer
        delta = {"role": "assistant", "content": json.dumps(model.plan)}
        finish = "stop"
    elif "write" in tools and not done:
        found = _WORKING.search(json.dumps(messages))
        workdir = model.workdir or (found.group(1) if found else "")
        path = f"{workdir.rstrip('/')}/{model.path}" if workdir else model.path
        args = json.dumps({"filePath": path, "content": model.content})
        call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "write", "arguments": args}}
        delta = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    elif not tools and not done:  # aider: no tools; its "whole" edit format is a file listing in the text
        delta = {"role": "assistant", "content": f"{model.path}\n```\n{model.content}```\n"}
        finish = "stop"
    else:
        delta = {"role": "assistant", "content": "Done: the file is written."}
        finish = "stop"
    usage = {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout}
    if not body.get("stream"):
        message = {k: v for k, v in delta.items() if k != "tool_calls"}
        if "tool_calls" in delta:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in delta["tool_calls"]]
        reply = {"id": "chatcmpl-1", "object": "chat.completion", "model": name, "usage": usage,
                 "choices": [{"index": 0, "message": message, "finish_reason": finish}]}  # fmt: skip
        return json.dumps(reply).encode(), "application/json"
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": name}
    events = [
        {**chunk, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}], "usage": usage},
    ]
    body_bytes = b"".join(f"data: {json.dumps(e)}\n\n".encode() for e in events) + b"data: [DONE]\n\n"
    return body_bytes, "text/event-stream"


# -- Gemini streamGenerateContent ------------------------------------------------------------------
def _gemini(model: FakeModel, body: dict[str, Any]) -> bytes:
    contents = body.get("contents") or []
    done = any(
        isinstance(part, dict) and "functionResponse" in part
        for c in contents
        if isinstance(c, dict)
        for part in c.get("parts") or []
    )
    names = [
        f.get("name")
        for tool in body.get("tools") or []
        if isinstance(tool, dict)
        for f in tool.get("functionDeclarations") or []
        if isinstance(f, dict)
    ]
    tin, tout = model.tokens
    if model.plan is not None:
        part: dict[str, Any] = {"text": json.dumps(model.plan)}
    elif "write_file" in names and not done:
        found = _WORKING.search(json.dumps(body))
        workdir = model.workdir or (found.group(1) if found else "")
        path = f"{workdir.rstrip('/')}/{model.path}" if workdir else model.path
        part = {"functionCall": {"name": "write_file", "args": {"file_path": path, "content": model.content}}}
    else:
        part = {"text": "Done: the file is written." if done else "Fake answer"}
    chunk = {
        "candidates": [{"content": {"role": "model", "parts": [part]}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": tin, "candidatesTokenCount": tout, "totalTokenCount": tin + tout},
        "modelVersion": "gemini-fake",
    }
    return f"data: {json.dumps(chunk)}\n\n".encode()


def _gemini_error(status: int) -> bytes:
    kind = {401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 429: "RESOURCE_EXHAUSTED"}.get(status, "INTERNAL")
    return json.dumps({"error": {"code": status, "message": f"fake error {status}", "status": kind}}).encode()


def _handler(model: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            model.requests.append({"method": "GET", "path": self.path})
            self._send(404, b'{"error": "not here"}', "application/json")

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            tools = [t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)]
            text_format = ((body.get("text") or {}).get("format") or {}).get("type")
            model.requests.append(
                {"method": "POST", "path": self.path, "model": body.get("model"), "tools": tools, "format": text_format}
            )
            route = self.path.split("?")[0]
            if route.endswith("/messages") or route.endswith("/responses"):
                call = model.take_call()
                if call <= model.fail_first:
                    self._send(model.status, json.dumps(_error_body(model.status)).encode(), "application/json")
                    return
                reply = _anthropic(model, body) if route.endswith("/messages") else _responses(model, body)
                self._send(200, reply, "text/event-stream")
                return
            if ":streamGenerateContent" in route or ":generateContent" in route:
                call = model.take_call()
                if call <= model.fail_first:
                    self._send(model.status, _gemini_error(model.status), "application/json")
                    return
                self._send(200, _gemini(model, body), "text/event-stream")
                return
            if route.endswith(":countTokens"):
                self._send(200, b'{"totalTokens": 10}', "application/json")
                return
            if route.endswith("/chat/completions"):
                call = model.take_call()
                if call <= model.fail_first:
                    self._send(model.status, json.dumps(_error_body(model.status)).encode(), "application/json")
                    return
                reply, kind = _chat(model, body)
                self._send(200, reply, kind)
                return
            if route.endswith("/count_tokens"):
                self._send(200, b'{"input_tokens": 10}', "application/json")
                return
            self._send(404, b'{"error": "not here"}', "application/json")

    return Handler


@contextmanager
def fake_model(**options: Any) -> Iterator[FakeModel]:
    """A running fake model server on 127.0.0.1 (port chosen by the system), stopped on exit."""
    model = FakeModel(**options)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(model))
    model.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="fake-model", daemon=True)
    thread.start()
    try:
        yield model
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
