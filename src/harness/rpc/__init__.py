"""harness.rpc: newline-delimited JSON-RPC 2.0 over pipes.

Three layers joined by small interfaces: framing (bytes <-> JSON lines), peer (ids, pending
requests, dispatch: :class:`Server` on the service side, :class:`Peer` on the caller's) and
transport (:class:`ServiceProcess`: a child process and its pipes).
"""

from .._logging import LOG_LEVEL_ENV, configure_logging
from ._client import Peer
from ._errors import (
    CANCELLED,
    CODE_NAMES,
    CONNECTION_CLOSED,
    GATE_BLOCKED,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_PLAN,
    INVALID_REQUEST,
    INVALID_TRANSITION,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    TIMEOUT,
    Cancelled,
    ClientClosed,
    ConnectionClosed,
    GateBlocked,
    InternalError,
    InvalidParams,
    InvalidPlan,
    InvalidRequest,
    InvalidTransition,
    MethodNotFound,
    NotFound,
    ParseError,
    RequestTimeout,
    RPCError,
    from_error_object,
    to_error_object,
)
from ._framing import DEFAULT_MAX_LINE, LineReader, LineWriter, decode, encode
from ._messages import ErrorObject, ErrorResponse, Notification, Request, Response, parse_message
from ._process import ServiceProcess, kill_group
from ._server import PROTOCOL_VERSION, Server

__all__ = [
    "CANCELLED",
    "CODE_NAMES",
    "CONNECTION_CLOSED",
    "DEFAULT_MAX_LINE",
    "GATE_BLOCKED",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_PLAN",
    "INVALID_REQUEST",
    "INVALID_TRANSITION",
    "LOG_LEVEL_ENV",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "PROTOCOL_VERSION",
    "TIMEOUT",
    "Cancelled",
    "ClientClosed",
    "ConnectionClosed",
    "ErrorObject",
    "ErrorResponse",
    "GateBlocked",
    "InternalError",
    "InvalidParams",
    "InvalidPlan",
    "InvalidRequest",
    "InvalidTransition",
    "LineReader",
    "LineWriter",
    "MethodNotFound",
    "NotFound",
    "Notification",
    "ParseError",
    "Peer",
    "RPCError",
    "Request",
    "RequestTimeout",
    "Response",
    "Server",
    "ServiceProcess",
    "configure_logging",
    "decode",
    "encode",
    "from_error_object",
    "kill_group",
    "parse_message",
    "to_error_object",
]
