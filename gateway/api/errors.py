"""How a client sees a failure: one kind per fault, decided here and only here.

`api_error` maps every core fault and backend fault onto an `ApiError` of one `ErrorKind`; the
kind table says what each kind is called in each API's own error shape, and with which status.
OpenAI's surfaces write `{"error": {"message", "type", "param", "code"}}`, Anthropic's Messages
API `{"type": "error", "error": {"type", "message"}}`; both come from the same `ApiError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from adapters.backends.errors import (
    BackendError,
    BackendLoadFailed,
    BackendProtocolError,
    BackendRejected,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
    TemplateUnavailable,
)

from ..core import faults

ErrorShape = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class ErrorKind:
    status: int
    openai_type: str
    anthropic_type: str
    # Where Anthropic's API answers the same condition with another status (529: overloaded).
    anthropic_status: int | None = None


# The one table: every failure is one of these kinds, whichever API the client speaks.
INVALID_REQUEST = ErrorKind(400, "invalid_request_error", "invalid_request_error")
AUTHENTICATION = ErrorKind(401, "invalid_request_error", "authentication_error")
PERMISSION = ErrorKind(403, "invalid_request_error", "permission_error")
NOT_FOUND = ErrorKind(404, "invalid_request_error", "not_found_error")
METHOD_NOT_ALLOWED = ErrorKind(405, "invalid_request_error", "invalid_request_error")
TOO_LARGE = ErrorKind(413, "invalid_request_error", "request_too_large")
FAILED_DEPENDENCY = ErrorKind(424, "external_connector_error", "api_error")
BUSY = ErrorKind(429, "rate_limit_error", "overloaded_error", anthropic_status=529)
RATE_LIMITED = ErrorKind(429, "rate_limit_error", "rate_limit_error")
CLIENT_GONE = ErrorKind(499, "invalid_request_error", "invalid_request_error")  # logged only: nobody reads it
INTERNAL = ErrorKind(500, "server_error", "api_error")
NOT_SUPPORTED = ErrorKind(501, "server_error", "api_error")
UPSTREAM = ErrorKind(502, "server_error", "api_error")
UNAVAILABLE = ErrorKind(503, "server_error", "overloaded_error")
TIMEOUT = ErrorKind(504, "server_error", "timeout_error")

_BY_STATUS = {kind.status: kind for kind in (
    INVALID_REQUEST, AUTHENTICATION, PERMISSION, NOT_FOUND, METHOD_NOT_ALLOWED, TOO_LARGE, FAILED_DEPENDENCY, BUSY,
    INTERNAL, NOT_SUPPORTED, UPSTREAM, UNAVAILABLE, TIMEOUT,
)}


def kind_of_status(status: int) -> ErrorKind:
    """The kind for a bare HTTP status (aiohttp's own errors); unlisted 4xx are invalid requests."""
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return kind
    if status < 500:
        return ErrorKind(status, "invalid_request_error", "invalid_request_error")
    return ErrorKind(status, "server_error", "api_error")


class ApiError(Exception):
    def __init__(
        self,
        kind: ErrorKind | int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind if isinstance(kind, ErrorKind) else kind_of_status(kind)
        self.status = self.kind.status
        self.message = message
        self.type = type or self.kind.openai_type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def anthropic_body(self, request_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "error", "error": {"type": self.kind.anthropic_type, "message": self.message}}
        if request_id:
            body["request_id"] = request_id
        return body

    def status_for(self, shape: ErrorShape) -> int:
        if shape == "anthropic" and self.kind.anthropic_status is not None:
            return self.kind.anthropic_status
        return self.status

    def body_for(self, shape: ErrorShape, request_id: str | None = None) -> dict[str, Any]:
        return self.anthropic_body(request_id) if shape == "anthropic" else self.body()


def speaks_anthropic(headers: Mapping[str, str]) -> bool:
    """The `anthropic` SDKs send `anthropic-version` on every request; OpenAI's never do."""
    return "anthropic-version" in headers


def error_shape(path: str, headers: Mapping[str, str]) -> ErrorShape:
    """Which API's error shape a request speaks: its path, or for the shared models list, its client."""
    if path.startswith("/v1/messages") or (path.startswith("/v1/models") and speaks_anthropic(headers)):
        return "anthropic"
    return "openai"


def _server_error(kind: ErrorKind, message: str, code: str) -> ApiError:
    return ApiError(kind, message, code=code)


def api_error(failure: BaseException) -> ApiError:
    """The client-facing error for any failure; anything unforeseen is a plain 500."""
    if isinstance(failure, ApiError):
        return failure
    if isinstance(failure, faults.Fault):
        return _from_fault(failure)
    if isinstance(failure, BackendError):
        return _from_backend_error(failure)
    return _server_error(INTERNAL, "Internal error in the gateway.", "internal_error")


def _from_fault(fault: faults.Fault) -> ApiError:
    message = fault.message
    match fault:
        case faults.InvalidRequest():
            return ApiError(INVALID_REQUEST, message, param=fault.param, code=fault.code)
        case faults.NotFound():
            return ApiError(NOT_FOUND, message, code=fault.code)
        case faults.Unsupported():
            return ApiError(NOT_SUPPORTED, message, code=fault.code)
        case faults.UnknownModel():
            return ApiError(NOT_FOUND, message, param="model", code="model_not_found")
        case faults.Unauthenticated():
            return ApiError(AUTHENTICATION, message, code="invalid_api_key")
        case faults.ModelNotAllowed():
            return ApiError(PERMISSION, message, param="model", code="model_not_allowed")
        case faults.McpServerNotAllowed():
            return ApiError(PERMISSION, message, param=fault.param, code="mcp_server_not_allowed")
        case faults.McpServerFailed():
            # OpenAI's status for a server it cannot list: 424 Failed Dependency.
            return ApiError(FAILED_DEPENDENCY, message, param=fault.param, code="mcp_server_failed")
        case faults.BackendBusy():
            return ApiError(BUSY, message, code="backend_busy", headers={"Retry-After": str(fault.retry_after)})
        case faults.RateLimited():
            # A key's own limit: Anthropic calls it rate_limit_error, with 429 on both surfaces.
            return ApiError(RATE_LIMITED, message, code="rate_limit_exceeded",
                            headers={"Retry-After": str(fault.retry_after)})
        case faults.NoBackendAvailable():
            return ApiError(UNAVAILABLE, message, code="no_backend_available", headers={"Retry-After": "1"})
        case faults.ShuttingDown():
            return ApiError(
                UNAVAILABLE, message, code="shutting_down", headers={"Retry-After": "1", "Connection": "close"}
            )
        case faults.RequestTimedOut():
            return _server_error(TIMEOUT, message, "request_timeout")
        case faults.TemplateBroken():
            return _server_error(UPSTREAM, message, "chat_template_broken")
        case faults.CallRejected():
            return _server_error(UPSTREAM, message, "tool_arguments_invalid")
        case faults.CallBrokeOff():
            return _server_error(UPSTREAM, message, "malformed_tool_call")
        case faults.StoreFailed():
            return _server_error(INTERNAL, message, "response_store_error")
        case faults.GenerationIncomplete():
            return _server_error(UPSTREAM, message, "generation_incomplete")
        case faults.OutputTooLarge():
            return _server_error(UPSTREAM, message, "output_too_large")
        case faults.ClientGone():
            return ApiError(CLIENT_GONE, message, code="client_disconnected")  # nginx's code: nobody reads it
    return _server_error(INTERNAL, message, "internal_error")


def _from_backend_error(error: BackendError) -> ApiError:
    """One status per kind of backend fault."""
    if isinstance(error, BackendLoadFailed):
        # The model is not there now (it could not start, or keeps dying): try again later.
        return ApiError(
            UNAVAILABLE, error.message, code="model_load_failed",
            headers={"Retry-After": str(max(1, round(error.retry_after)))},
        )
    if isinstance(error, ContextLengthExceeded):
        return ApiError(INVALID_REQUEST, error.message, param="messages", code="context_length_exceeded")
    if isinstance(error, BackendRejected):
        return ApiError(INVALID_REQUEST if error.status in (None, 400) else UPSTREAM, error.message, code="backend_rejected")
    if isinstance(error, BackendTimeout):
        return _server_error(TIMEOUT, error.message, "backend_timeout")
    if isinstance(error, BackendUnreachable):
        return _server_error(UPSTREAM, error.message, "backend_unreachable")
    if isinstance(error, BackendProtocolError):
        return _server_error(UPSTREAM, error.message, "backend_protocol_error")
    if isinstance(error, TemplateUnavailable):
        return _server_error(UPSTREAM, error.message, "chat_template_unavailable")
    return _server_error(UPSTREAM, error.message, "backend_error")
