"""Error codes and the exceptions that carry them.

Every wire error code has one named constant and one exception class. The server turns exceptions
into wire errors in exactly one place (:func:`to_error_object`); the client turns wire errors back
into the same classes (:func:`from_error_object`), so callers catch by class and tests assert
``.code``, never message text.

    RPCError                    (any JSON-RPC error; .code, .message, .data)
    ├── ParseError              -32700  the line is not JSON (reply id is null)
    ├── InvalidRequest          -32600  not a request object, a batch, or a line over the limit
    ├── MethodNotFound          -32601
    ├── InvalidParams           -32602  pydantic details in .data
    ├── InternalError           -32603  a handler raised something unexpected
    ├── NotFound                -32001  no such worker, run, phase artifact, ...
    ├── GateBlocked             -32002  not trusted / not approved: the caller must decide first
    ├── InvalidTransition       -32003  the state machine does not allow that step now
    ├── InvalidPlan             -32004  cycle, unknown dependency, size, vague task (all listed)
    ├── RequestTimeout          -32005  a bounded wait ran out
    ├── Cancelled               -32006  the work was cancelled before it finished
    ├── ConnectionClosed        -32007  the peer died or closed the pipe; pending requests fail
    │   └── ClientClosed                you closed this peer yourself and then used it
    └── UpstreamFailed          -32008  what the service relies on (a model endpoint, an agent
                                        CLI) refused or failed; .data says how (never a secret)
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NOT_FOUND = -32001
GATE_BLOCKED = -32002
INVALID_TRANSITION = -32003
INVALID_PLAN = -32004
TIMEOUT = -32005
CANCELLED = -32006
CONNECTION_CLOSED = -32007
UPSTREAM_FAILED = -32008

#: Human names of the codes, used by contracts and documentation.
CODE_NAMES: dict[int, str] = {
    PARSE_ERROR: "parse_error",
    INVALID_REQUEST: "invalid_request",
    METHOD_NOT_FOUND: "method_not_found",
    INVALID_PARAMS: "invalid_params",
    INTERNAL_ERROR: "internal_error",
    NOT_FOUND: "not_found",
    GATE_BLOCKED: "gate_blocked",
    INVALID_TRANSITION: "invalid_transition",
    INVALID_PLAN: "invalid_plan",
    TIMEOUT: "timeout",
    CANCELLED: "cancelled",
    CONNECTION_CLOSED: "connection_closed",
    UPSTREAM_FAILED: "upstream_failed",
}


class RPCError(Exception):
    """A JSON-RPC error: a code, a one-line message and optional structured data."""

    code: int = INTERNAL_ERROR
    default_message: str = "Internal error"
    #: The id of the request this error answers, when the error is raised before dispatch.
    request_id: int | str | None = None

    def __init__(self, message: str | None = None, data: Any = None) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class ParseError(RPCError):
    code = PARSE_ERROR
    default_message = "Parse error"


class InvalidRequest(RPCError):
    code = INVALID_REQUEST
    default_message = "Invalid request"


class MethodNotFound(RPCError):
    code = METHOD_NOT_FOUND
    default_message = "Method not found"


class InvalidParams(RPCError):
    code = INVALID_PARAMS
    default_message = "Invalid params"


class InternalError(RPCError):
    code = INTERNAL_ERROR
    default_message = "Internal error"


class NotFound(RPCError):
    code = NOT_FOUND
    default_message = "Not found"


class GateBlocked(RPCError):
    code = GATE_BLOCKED
    default_message = "Blocked by a gate: a decision is required first"


class InvalidTransition(RPCError):
    code = INVALID_TRANSITION
    default_message = "Invalid state transition"


class InvalidPlan(RPCError):
    code = INVALID_PLAN
    default_message = "Invalid plan"


class RequestTimeout(RPCError):
    code = TIMEOUT
    default_message = "Timed out"


class Cancelled(RPCError):
    code = CANCELLED
    default_message = "Cancelled"


class ConnectionClosed(RPCError):
    code = CONNECTION_CLOSED
    default_message = "Connection closed: the peer exited or closed its pipe"


class ClientClosed(ConnectionClosed):
    default_message = "This peer was closed by its owner; start a new one to send more requests"


class UpstreamFailed(RPCError):
    """A model endpoint or an agent CLI the service called refused or failed. ``data.kind`` is one
    of permission, quota, timeout, unavailable, config, rejected, unusable."""

    code = UPSTREAM_FAILED
    default_message = "The upstream the service relies on failed"


_BY_CODE: dict[int, type[RPCError]] = {
    cls.code: cls
    for cls in (
        ParseError,
        InvalidRequest,
        MethodNotFound,
        InvalidParams,
        InternalError,
        NotFound,
        GateBlocked,
        InvalidTransition,
        InvalidPlan,
        RequestTimeout,
        Cancelled,
        ConnectionClosed,
        UpstreamFailed,
    )
}


def error_class(code: int) -> type[RPCError]:
    """The exception class for a wire code (RPCError itself for codes we do not know)."""
    return _BY_CODE.get(code, RPCError)


def from_error_object(error: dict[str, Any]) -> RPCError:
    """Build the exception matching a wire error object ``{code, message, data}``."""
    code = error.get("code")
    cls = error_class(code) if isinstance(code, int) else RPCError
    exc = cls(str(error.get("message") or cls.default_message), error.get("data"))
    if cls is RPCError and isinstance(code, int):
        exc.code = code
    return exc


def to_error_object(exc: BaseException) -> dict[str, Any]:
    """The single boundary from exceptions to wire errors.

    RPCError subclasses keep their code and data; pydantic validation errors become -32602 with
    the error list in ``data``; anything else is -32603 carrying only the exception's type and
    text (no traceback on the wire).
    """
    if isinstance(exc, RPCError):
        obj: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            obj["data"] = exc.data
        return obj
    # Imported here so the module stays importable without pydantic on the path.
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return {
            "code": INVALID_PARAMS,
            "message": f"Invalid params: {exc.error_count()} validation error(s)",
            "data": validation_details(exc),
        }
    return {"code": INTERNAL_ERROR, "message": f"Internal error: {type(exc).__name__}: {exc}"}


def validation_details(exc: Any) -> list[dict[str, Any]]:
    """Pydantic errors as plain JSON: location, message and type of each problem."""
    return [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]
