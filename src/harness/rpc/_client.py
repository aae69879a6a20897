"""The caller's side: a peer with many requests in flight, correlated by id.

A reader thread sorts incoming lines: responses complete their pending future, notifications go
to a callback. When the peer's stream ends, every pending request fails at once with
ConnectionClosed; a request made after ``close()`` fails with ClientClosed ("you closed it" and
"the other side died" are different errors). Each request may carry a timeout; one timer thread
expires them, and a response that arrives after its timeout is dropped without harm.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import IO, Any

from ._errors import (
    ClientClosed,
    ConnectionClosed,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    RequestTimeout,
    from_error_object,
)
from ._framing import DEFAULT_MAX_LINE, LineReader, LineWriter, Oversized, decode, encode, sniff_id
from ._messages import JSONRPC_VERSION, readable_id
from ._server import dump_result

logger = logging.getLogger(__name__)

NotificationCallback = Callable[[str, Any], None]
CloseCallback = Callable[[BaseException | None], None]


class Peer:
    """A JSON-RPC client over a pair of byte streams (usually a child process's pipes)."""

    def __init__(
        self,
        reader: IO[bytes],
        writer: IO[bytes] | int | LineWriter,
        *,
        name: str = "peer",
        on_notification: NotificationCallback | None = None,
        on_close: CloseCallback | None = None,
        max_line: int = DEFAULT_MAX_LINE,
        ids: Iterator[int | str] | None = None,
    ) -> None:
        self.name = name
        self._reader = LineReader(reader, max_line)
        self._writer = writer if isinstance(writer, LineWriter) else LineWriter(writer)
        self._on_notification = on_notification
        self._on_close = on_close
        self._ids = ids or itertools.count(1)
        self._pending: dict[int | str, Future[Any]] = {}
        self._lock = threading.Lock()
        self._closed_by_owner = False
        self._dead: BaseException | None = None
        self._deadlines: list[tuple[float, int | str]] = []
        self._timer_cv = threading.Condition(self._lock)
        self._timer: threading.Thread | None = None
        self._thread = threading.Thread(target=self._read_loop, name=f"{name}-reader", daemon=True)
        self.late_responses = 0

    def start(self) -> Peer:
        self._thread.start()
        return self

    # -- state ----------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self._dead is None and not self._closed_by_owner

    @property
    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_closed(self, timeout: float) -> bool:
        """Wait (bounded) until the reader saw the end of the stream."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- sending --------------------------------------------------------------------------------
    def request_async(self, method: str, params: Any = None, *, timeout: float | None = None) -> Future[Any]:
        """Send a request; the returned future holds its result or its RPCError.

        Params that cannot be encoded as JSON raise InvalidParams at once: the caller's mistake,
        not a broken connection, and nothing is left pending.
        """
        fut: Future[Any] = Future()
        msg: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method, "id": 0}
        if params is not None:
            msg["params"] = dump_result(params)
        with self._lock:
            if self._closed_by_owner:
                raise ClientClosed()
            if self._dead is not None:
                raise ConnectionClosed(f"{self.name} is gone: {self._dead}") from self._dead
            rid = next(self._ids)
            msg["id"] = rid
            try:
                line = encode(msg)
            except (TypeError, ValueError) as exc:
                raise InvalidParams(f"params are not JSON: {exc}") from exc
            self._pending[rid] = fut
            if timeout is not None:
                if len(self._deadlines) > 2 * len(self._pending) + 64:  # drop answered requests' deadlines
                    self._deadlines = [d for d in self._deadlines if d[1] in self._pending]
                    heapq.heapify(self._deadlines)
                heapq.heappush(self._deadlines, (time.monotonic() + timeout, rid))
                self._ensure_timer()
                if self._deadlines[0][1] == rid:  # only an earlier deadline needs the timer awake
                    self._timer_cv.notify()
        try:
            self._writer.write(line)
        except (OSError, ValueError) as exc:
            self._fail(rid, ConnectionClosed(f"{self.name}: cannot write: {exc}"))
        return fut

    def request(self, method: str, params: Any = None, *, timeout: float = 30.0) -> Any:
        """Send a request and wait (bounded) for its result; raises the matching RPCError."""
        fut = self.request_async(method, params, timeout=timeout)
        # The timer thread fails the future at the deadline; the margin covers scheduling only.
        return fut.result(timeout + 5.0)

    def notify(self, method: str, params: Any = None) -> None:
        msg: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
        if params is not None:
            msg["params"] = dump_result(params)
        if self._closed_by_owner:
            raise ClientClosed()
        try:
            self._writer.send(msg)
        except (OSError, ValueError) as exc:
            raise ConnectionClosed(f"{self.name}: cannot write: {exc}") from exc

    def close(self) -> None:
        """Close our side: pending requests fail with ClientClosed, the write pipe is closed."""
        with self._lock:
            self._closed_by_owner = True
            pending, self._pending = self._pending, {}
            self._timer_cv.notify()
        for fut in pending.values():
            fut.set_exception(ClientClosed())
        self._writer.close()

    # -- receiving ------------------------------------------------------------------------------
    def _fail(self, rid: int | str, exc: BaseException) -> None:
        with self._lock:
            fut = self._pending.pop(rid, None)
        if fut is not None:
            fut.set_exception(exc)

    def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            for line in self._reader:
                if isinstance(line, Oversized):
                    rid = sniff_id(line.head)
                    if rid is not None:
                        limit = self._reader.max_line
                        self._fail(
                            rid,
                            InvalidRequest(
                                f"{self.name}: reply of {line.size} bytes exceeds {limit}",
                                {"limit": limit, "size": line.size},
                            ),
                        )
                    continue
                try:
                    obj = decode(line)
                except ValueError:
                    continue
                if isinstance(obj, dict):
                    self._on_message(obj)
        except (OSError, ValueError) as exc:
            error = exc
        finally:
            self._on_eof(error)

    def _on_message(self, obj: dict[str, Any]) -> None:
        if "method" in obj:
            if "id" in obj:  # a request from the service: we serve none
                err = MethodNotFound(f"{obj.get('method')}: this client serves no methods")
                try:
                    self._writer.send(
                        {
                            "jsonrpc": JSONRPC_VERSION,
                            "id": readable_id(obj),
                            "error": {"code": err.code, "message": err.message},
                        }
                    )
                except (OSError, ValueError):
                    pass
                return
            if self._on_notification is not None:
                try:
                    self._on_notification(str(obj["method"]), obj.get("params"))
                except Exception as exc:  # a callback bug must not stop the reader
                    logger.error(
                        "%s: notification callback failed: %r",
                        self.name,
                        exc,
                        exc_info=logger.isEnabledFor(logging.DEBUG),
                    )
            return
        rid = readable_id(obj)
        with self._lock:
            fut = self._pending.pop(rid, None) if rid is not None else None
        if fut is None:
            self.late_responses += 1
            return
        if "error" in obj and isinstance(obj["error"], dict):
            fut.set_exception(from_error_object(obj["error"]))
        else:
            fut.set_result(obj.get("result"))

    def _on_eof(self, error: BaseException | None) -> None:
        with self._lock:
            self._dead = ConnectionClosed(f"{self.name} closed its output" + (f": {error}" if error else ""))
            pending, self._pending = self._pending, {}
            self._timer_cv.notify()
        exc_cls = ClientClosed if self._closed_by_owner else ConnectionClosed
        for fut in pending.values():
            fut.set_exception(exc_cls(f"{self.name} exited with {len(pending)} request(s) pending"))
        if self._on_close is not None:
            try:
                self._on_close(error)
            except Exception as exc:
                logger.error(
                    "%s: close callback failed: %r", self.name, exc, exc_info=logger.isEnabledFor(logging.DEBUG)
                )

    # -- timeouts -------------------------------------------------------------------------------
    def _ensure_timer(self) -> None:
        if self._timer is None:
            self._timer = threading.Thread(target=self._timer_loop, name=f"{self.name}-timer", daemon=True)
            self._timer.start()

    def _timer_loop(self) -> None:
        with self._lock:
            while self._dead is None and not self._closed_by_owner:
                now = time.monotonic()
                expired: list[Future[Any]] = []
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, rid = heapq.heappop(self._deadlines)
                    fut = self._pending.pop(rid, None)
                    if fut is not None:
                        expired.append(fut)
                if expired:
                    self._lock.release()
                    try:
                        for fut in expired:
                            fut.set_exception(RequestTimeout(f"{self.name}: no response in time"))
                    finally:
                        self._lock.acquire()
                    continue
                wait = self._deadlines[0][0] - now if self._deadlines else None
                self._timer_cv.wait(wait)
