"""The four JSON-RPC 2.0 message kinds as pydantic models, and one parser that sorts a line.

A request without ``"jsonrpc"`` is accepted (hand-typed pipes often omit it); everything we write
carries ``"jsonrpc": "2.0"``. Batches are refused: every call must pass the gates on its own.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, StrictStr, Tag, TypeAdapter

from ._errors import InvalidRequest, validation_details

JSONRPC_VERSION: Final = "2.0"

RequestId: TypeAlias = StrictInt | StrictStr
Params: TypeAlias = dict[str, Any] | list[Any] | None


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    jsonrpc: Literal["2.0"] = JSONRPC_VERSION


class Request(_Message):
    id: RequestId
    method: str = Field(min_length=1)
    params: Params = None


class Notification(_Message):
    method: str = Field(min_length=1)
    params: Params = None


class Response(_Message):
    id: RequestId
    result: Any


class ErrorObject(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    code: StrictInt
    message: str
    data: Any = None


class ErrorResponse(_Message):
    id: RequestId | None
    error: ErrorObject


def _kind(obj: Any) -> str | None:
    if isinstance(obj, dict):
        if "method" in obj:
            return "request" if "id" in obj else "notification"
        if "error" in obj:
            return "error"
        if "result" in obj:
            return "response"
        return None
    if isinstance(obj, BaseModel):  # already parsed
        return {
            Request: "request",
            Notification: "notification",
            Response: "response",
            ErrorResponse: "error",
        }.get(type(obj))
    return None


Message = Annotated[
    Annotated[Request, Tag("request")]
    | Annotated[Notification, Tag("notification")]
    | Annotated[Response, Tag("response")]
    | Annotated[ErrorResponse, Tag("error")],
    Discriminator(_kind),
]

_MESSAGE = TypeAdapter(Message)


def readable_id(obj: Any) -> RequestId | None:
    """The id of a decoded object when it has a well-typed one, else None."""
    if isinstance(obj, dict):
        rid = obj.get("id")
        if isinstance(rid, (int, str)) and not isinstance(rid, bool):
            return rid
    return None


def parse_message(obj: Any) -> Request | Notification | Response | ErrorResponse:
    """Sort a decoded JSON value into one of the four message models.

    Raises InvalidRequest (with the message's id in ``.request_id`` when readable) for batches,
    non-objects and objects that are not a valid JSON-RPC message.
    """
    if isinstance(obj, list):
        raise InvalidRequest("Batches are not supported: send one request per line")
    if not isinstance(obj, dict):
        raise InvalidRequest(f"A message must be a JSON object, not {type(obj).__name__}")
    try:
        return _MESSAGE.validate_python(obj)
    except Exception as exc:  # pydantic ValidationError, or no tag matched
        details = validation_details(exc) if hasattr(exc, "errors") else [{"msg": str(exc)}]
        err = InvalidRequest("Not a valid JSON-RPC 2.0 message", {"errors": details})
        err.request_id = readable_id(obj)
        raise err from exc
