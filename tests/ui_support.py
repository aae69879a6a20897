"""A real dashboard server on 127.0.0.1 for the tests (uvicorn in a thread), and a small client."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


@dataclass
class Dashboard:
    host: str
    port: int
    token: str
    cookie: str = ""
    resumed: list[tuple[str, str, int]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/?token={self.token}"

    def request(
        self,
        method: str,
        path: str,
        *,
        body: str | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        timeout: float = 20,
    ) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            sent = dict(headers or {})
            if auth and self.cookie:
                sent.setdefault("Cookie", self.cookie)
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            return Reply(
                response.status, {k.lower(): v for k, v in response.getheaders()}, response.read().decode("utf-8")
            )
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, form: dict[str, Any], *, origin: str | None = "", **kw: Any) -> Reply:
        headers = {"Content-Type": "application/x-www-form-urlencoded", **kw.pop("headers", {})}
        if origin is not None:
            headers["Origin"] = origin or self.base
        return self.request("POST", path, body=urlencode(form, doseq=True), headers=headers, **kw)

    def login(self) -> None:
        reply = self.get(f"/?token={self.token}", auth=False)
        assert reply.status == 303, reply
        self.cookie = reply.headers["set-cookie"].split(";", 1)[0]


@contextmanager
def dashboard(
    workspace: Any, *, read_only: bool = False, resume: Callable[[str, str, int], int | None] | None = None
) -> Iterator[Dashboard]:
    """The app as `harness ui` serves it, on a free loopback port; ``resume`` stands in for the
    background resume where a test only checks that one was asked for (None: the real one)."""
    import uvicorn

    from harness.ui.app import Settings, background_resume, create_app
    from harness.ui.server import allowed_hosts, bind

    bound = bind("127.0.0.1", 0)
    board = Dashboard("127.0.0.1", bound.port, "test-token-0123456789abcdef")

    def record(ws: str, run_id: str, parallel: int) -> int | None:
        board.resumed.append((ws, run_id, parallel))
        if resume is not None:
            return resume(ws, run_id, parallel)
        return background_resume(ws, run_id, parallel, settings.ended)

    settings = Settings(
        workspace=str(workspace),
        token=board.token,
        read_only=read_only,
        hosts=allowed_hosts(bound),
        approver="tester",
        resume=record,
    )
    config = uvicorn.Config(
        create_app(settings), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [bound.sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the dashboard did not start"
    try:
        board.login()
        yield board
    finally:
        server.should_exit = True
        thread.join(10)
        bound.sock.close()
