"""The service side: a read loop that dispatches each line to a typed handler.

The loop reads stdin on the main thread and answers cheap methods inline (the fastest shape for a
stdio service). Methods registered with ``blocking=True`` run on a small thread pool so a long call
(a worker running for minutes) never holds up the others; a cheap method whose rest blocks
returns :class:`Later` to finish there. Every line that carries a readable id
gets exactly one reply; nothing the peer sends can end the loop except EOF or ``shutdown``.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import threading
import typing
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, NoReturn

from pydantic import BaseModel

from ._errors import (
    INTERNAL_ERROR,
    InvalidParams,
    InvalidRequest,
    MethodNotFound,
    ParseError,
    RPCError,
    to_error_object,
)
from ._framing import DEFAULT_MAX_LINE, LineReader, LineWriter, Oversized, decode, encode, sniff_id
from ._messages import JSONRPC_VERSION, Notification, Request, parse_message, readable_id

#: Version of the harness service protocol (methods, notifications, lifecycle), not of JSON-RPC.
PROTOCOL_VERSION = "1"

Handler = Callable[..., Any]

logger = logging.getLogger(__name__)


def _max_line_from_env() -> int:
    """The line size limit: ``HARNESS_MAX_LINE`` (bytes) when set to a positive integer."""
    raw = os.environ.get("HARNESS_MAX_LINE", "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_MAX_LINE


def dump_result(value: Any) -> Any:
    """A handler's return value as the wire takes it: a model is dumped here; models nested in
    lists and dicts are dumped by the encoder itself (``_framing.encode``), without a copy of
    every container on the way."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return value


@dataclass(frozen=True, slots=True)
class Later:
    """What a handler run on the reader returns when the rest of its call blocks: the server runs
    ``rest`` on its pool and answers with what it returns (or the error it raises). The part before
    ran in order with the messages around it, and its hand-over to a pool thread overlaps whatever
    the caller does meanwhile."""

    rest: Callable[[], Any]


@dataclass(slots=True)
class _Method:
    name: str
    fn: Handler
    params_model: type[BaseModel] | None
    blocking: bool
    takes_arg: bool

    def invoke(self, params: Any) -> Any:
        arg = self.bind(params)
        return self.fn(arg) if self.takes_arg else self.fn()

    def bind(self, params: Any) -> Any:
        """Validate wire params into the handler's argument (or None when it takes none)."""
        if self.params_model is None:
            if params not in (None, {}, []):
                if not isinstance(params, dict):
                    raise InvalidParams("params must be an object")
            return params
        if isinstance(params, list):
            raise InvalidParams("params must be an object with named fields, not an array")
        return self.params_model.model_validate(params or {})


def _params_model(fn: Handler) -> type[BaseModel] | None:
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if not params:
        return None
    hints = typing.get_type_hints(fn)
    hint = hints.get(params[0].name)
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    return None


class Server:
    """A JSON-RPC service: register handlers, then ``run_stdio()`` (or ``serve`` on any streams)."""

    def __init__(
        self,
        name: str,
        version: str,
        *,
        contract: str | None = None,
        notifications: list[str] | None = None,
        max_line: int | None = None,
        max_threads: int = 32,
        pool_initializer: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.version = version
        self.contract = contract or name
        self.notifications = list(notifications or [])
        self.max_line = max_line or _max_line_from_env()
        self._max_threads = max_threads
        self._pool_initializer = pool_initializer  # run by each pool thread before its first call
        self._methods: dict[str, _Method] = {}
        self._writer: LineWriter | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: set[Future[Any]] = set()
        self._inflight_lock = threading.Lock()
        self._stopping = False
        #: Called once the input ends (EOF or shutdown), before the calls in flight are waited for.
        self.on_input_end: Callable[[], None] | None = None
        self.add_method("initialize", self._initialize)
        self.add_method("ping", self._ping)
        self.add_method("shutdown", self._shutdown)

    # -- registration -------------------------------------------------------------------------
    def add_method(
        self,
        name: str,
        fn: Handler,
        *,
        params: type[BaseModel] | None = None,
        blocking: bool = False,
    ) -> None:
        """Register ``fn`` for ``name``; its params model is taken from its first annotation."""
        takes_arg = bool(inspect.signature(fn).parameters)
        self._methods[name] = _Method(name, fn, params or _params_model(fn), blocking, takes_arg)

    def method(self, name: str | None = None, *, blocking: bool = False) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.add_method(name or fn.__name__, fn, blocking=blocking)
            return fn

        return register

    @property
    def method_names(self) -> list[str]:
        return sorted(self._methods)

    # -- built-in methods ---------------------------------------------------------------------
    def _initialize(self, params: Any = None) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "protocol_version": PROTOCOL_VERSION,
            "jsonrpc": JSONRPC_VERSION,
            "contract": self.contract,
            "methods": self.method_names,
            "notifications": self.notifications,
            "pid": os.getpid(),
        }

    def _ping(self, params: Any = None) -> dict[str, Any]:
        return {}

    def _shutdown(self, params: Any = None) -> dict[str, Any]:
        self._stopping = True
        return {}

    # -- sending ------------------------------------------------------------------------------
    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification to the peer (thread-safe). Dropped quietly if the pipe is gone."""
        msg: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
        if params is not None:
            msg["params"] = dump_result(params)
        self._send(msg)

    def _send(self, msg: dict[str, Any]) -> None:
        """Encode, then write. A value that is not JSON is the service's bug, not a dead pipe:
        the request still gets an answer (-32603) and the service goes on."""
        writer = self._writer
        if writer is None or writer.closed:
            return
        try:
            data = encode(msg)
        except (TypeError, ValueError, RecursionError) as exc:
            logger.error(
                "%s: cannot encode %s: %s: %s", self.name, msg.get("method") or "a reply", type(exc).__name__, exc
            )
            if "id" not in msg:
                return
            error = {
                "code": INTERNAL_ERROR,
                "message": f"Internal error: the result is not JSON ({type(exc).__name__})",
            }
            data = encode({"jsonrpc": JSONRPC_VERSION, "id": msg["id"], "error": error})
        try:
            writer.write(data)
        except (OSError, ValueError):
            self._stopping = True

    def _reply(self, rid: Any, result: Any) -> None:
        self._send({"jsonrpc": JSONRPC_VERSION, "id": rid, "result": dump_result(result)})

    def _reply_error(self, rid: Any, exc: BaseException) -> None:
        if not isinstance(exc, RPCError) and not hasattr(exc, "errors"):
            logger.error(
                "%s: internal error: %s: %s",
                self.name,
                type(exc).__name__,
                exc,
                exc_info=exc if logger.isEnabledFor(logging.DEBUG) else None,
            )
        self._send({"jsonrpc": JSONRPC_VERSION, "id": rid, "error": to_error_object(exc)})

    # -- the loop -----------------------------------------------------------------------------
    def serve(self, reader: IO[bytes], writer: LineWriter | IO[bytes] | int) -> None:
        """Answer lines from ``reader`` until EOF or shutdown; then wait for calls in flight."""
        self._writer = writer if isinstance(writer, LineWriter) else LineWriter(writer)
        lines = LineReader(reader, self.max_line)
        try:
            while not self._stopping:
                line = lines.read()
                if line is None:
                    break
                self.handle_line(line)
        finally:
            if self.on_input_end is not None:
                try:
                    self.on_input_end()
                except Exception as exc:
                    logger.error("%s: end of input: %s: %s", self.name, type(exc).__name__, exc)
            self._drain()

    def _drain(self) -> None:
        with self._inflight_lock:
            pending = list(self._inflight)
        for fut in pending:
            try:
                fut.result()
            except BaseException:  # already answered on the wire
                pass
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def handle_line(self, line: bytes | Oversized) -> None:
        """Handle one line; never raises."""
        if isinstance(line, Oversized):
            self._reply_error(
                sniff_id(line.head),
                InvalidRequest(
                    f"Line of {line.size} bytes exceeds the limit of {self.max_line} bytes",
                    {"limit": self.max_line, "size": line.size},
                ),
            )
            return
        if not line.strip():
            return
        try:
            obj = decode(line)
        except (ValueError, UnicodeDecodeError) as exc:
            self._reply_error(None, ParseError(f"Parse error: {exc}"))
            return
        except RecursionError:
            self._reply_error(None, ParseError("Parse error: nested too deeply"))
            return
        try:
            msg = parse_message(obj)
        except InvalidRequest as exc:
            self._reply_error(exc.request_id, exc)
            return
        except RecursionError:
            self._reply_error(readable_id(obj), InvalidRequest("Invalid request: nested too deeply"))
            return
        if isinstance(msg, Request):
            self._dispatch(msg)
        elif isinstance(msg, Notification):
            self._dispatch_notification(msg)
        else:
            # A response or error sent to a service: this side never sends requests.
            rid = getattr(msg, "id", None)
            if rid is not None:
                self._reply_error(rid, InvalidRequest("Unexpected response: this service sends no requests"))

    def _dispatch(self, req: Request) -> None:
        method = self._methods.get(req.method)
        if method is None:
            self._reply_error(
                req.id,
                MethodNotFound(
                    f"Method not found: {req.method}", {"method": req.method, "available": self.method_names}
                ),
            )
            return
        if method.blocking:
            self._submit(self._call, method, req)
        else:
            self._call(method, req)

    def _call(self, method: _Method, req: Request) -> None:
        self._finish(req, lambda: method.invoke(req.params))

    def _finish(self, req: Request, work: Callable[[], Any]) -> None:
        try:
            result = work()
        except BaseException as exc:  # the boundary: every failure becomes a wire error
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._reply_error(req.id, exc)
            return
        if isinstance(result, Later):
            self._submit(self._finish, req, result.rest)
            return
        self._reply(req.id, result)

    def _dispatch_notification(self, note: Notification) -> None:
        method = self._methods.get(note.method)
        if method is None:
            return
        self._notified(note, lambda: method.invoke(note.params))

    def _notified(self, note: Notification, work: Callable[[], Any]) -> None:
        """A notification's handler (or its rest, on the pool): no answer; a failure is logged."""
        try:
            result = work()
        except Exception as exc:
            logger.error(
                "%s: notification %s failed: %s: %s",
                self.name,
                note.method,
                type(exc).__name__,
                exc,
                exc_info=logger.isEnabledFor(logging.DEBUG),
            )
            return
        if isinstance(result, Later):
            self._submit(self._notified, note, result.rest)

    def _submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run a call (or its rest) on the pool; shutdown waits for it."""
        fut = self._executor().submit(fn, *args)
        with self._inflight_lock:
            self._inflight.add(fut)
        fut.add_done_callback(self._forget)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self._max_threads, thread_name_prefix=self.name, initializer=self._pool_initializer
            )
        return self._pool

    def _forget(self, fut: Future[Any]) -> None:
        with self._inflight_lock:
            self._inflight.discard(fut)

    # -- entry point --------------------------------------------------------------------------
    def run_stdio(self) -> int:
        """Serve on stdin/stdout with fd 1 protected: only protocol messages reach the wire.

        The real stdout is duplicated to a private descriptor for the wire, then fd 1 is pointed
        at stderr, so a stray ``print`` or a child process inheriting fd 1 writes to stderr.
        """
        wire = os.dup(1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        try:
            self.serve(sys.stdin.buffer, LineWriter(wire))
        except KeyboardInterrupt:
            return 130
        finally:
            if self._writer is not None:
                self._writer.close()
        return 0

    def run_stdio_and_exit(self, before_exit: Callable[[], None] | None = None) -> NoReturn:
        """``run_stdio``, then ``before_exit`` (the service's own clean-up), then end the process
        at once: everything was answered and the wire is closed, so the interpreter's teardown
        (module cleanup, a last GC) would only delay the supervisor waiting for this exit."""
        code = self.run_stdio()
        if before_exit is not None:
            try:
                before_exit()
            except Exception as exc:
                logger.error("%s: clean-up before exit failed: %s: %s", self.name, type(exc).__name__, exc)
        for stream in (sys.stderr, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
