"""`harness ui`: bind, print the address with a fresh access token, serve until Ctrl-C."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import sys
from dataclasses import dataclass

DEFAULT_PORT = 8642


class ServeError(Exception):
    """The dashboard cannot be served as asked (a busy port, an address that cannot be bound)."""


@dataclass(frozen=True)
class Bound:
    sock: socket.socket
    host: str
    port: int

    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int | None) -> Bound:
    """A listening socket on ``host``; the default port, or any free one when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    wanted = DEFAULT_PORT if port is None else port
    for attempt in (wanted, 0) if port is None else (wanted,):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by every accepted connection: without it a small response waits for the
        # client's delayed ACK (measured: 44 ms for a 6 kB file instead of 2 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, attempt))
        except OSError as exc:
            sock.close()
            if attempt == 0 or port is not None:
                raise ServeError(f"cannot listen on {host}:{attempt}: {exc.strerror or exc}") from None
            continue
        sock.listen(128)
        sock.set_inheritable(False)
        return Bound(sock, host, sock.getsockname()[1])
    raise ServeError(f"cannot listen on {host}")  # pragma: no cover - the loop returns or raises


def allowed_hosts(bound: Bound) -> frozenset[str]:
    """What the Host header may say: the loopback names of this port. An address that is not
    loopback was named on purpose (--host), so any name that reaches it is accepted there."""
    if not is_loopback(bound.host):
        return frozenset()
    port = bound.port
    return frozenset({f"{bound.url_host}:{port}", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"})


def serve(workspace: str, *, host: str, port: int | None, read_only: bool, open_browser: bool, approver: str) -> int:
    import uvicorn

    from .app import Settings, background_resume, create_app

    bound = bind(host, port)
    token = secrets.token_urlsafe(24)
    settings = Settings(
        workspace=workspace, token=token, read_only=read_only, hosts=allowed_hosts(bound), approver=approver
    )
    if not read_only:
        settings.resume = lambda ws, run_id, parallel: background_resume(ws, run_id, parallel, settings.ended)
    url = f"http://{bound.url_host}:{bound.port}/?token={token}"
    print(f"harness dashboard for {workspace}{' (read-only)' if read_only else ''}")
    print(f"  {url}")
    if not is_loopback(host):
        print(f"  warning: listening on {host}, not only on this machine: anyone who has the address can use it")
    print("  Ctrl-C stops it (runs it resumed go on).", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(
        create_app(settings),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[bound.sock])
    except KeyboardInterrupt:
        pass
    finally:
        bound.sock.close()
    print("harness dashboard stopped", file=sys.stderr)
    return 0
