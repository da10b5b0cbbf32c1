"""How a client sees a failure: one status, type and code per fault, decided here and only here.

`ApiError` is the edge's view of any failure (status, message, type, param, code, headers);
`api_error` maps every core fault and backend fault onto it. Each API surface then writes the
`ApiError` in its own shape (OpenAI's `{"error": {...}}` by default).
"""

from __future__ import annotations

from typing import Any

from adapters.backends.errors import (
    BackendError,
    BackendProtocolError,
    BackendRejected,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
    TemplateUnavailable,
)

from ..core import faults


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _server_error(status: int, message: str, code: str) -> ApiError:
    return ApiError(status, message, type="server_error", code=code)


def api_error(failure: BaseException) -> ApiError:
    """The client-facing error for any failure; anything unforeseen is a plain 500."""
    if isinstance(failure, ApiError):
        return failure
    if isinstance(failure, faults.Fault):
        return _from_fault(failure)
    if isinstance(failure, BackendError):
        return _from_backend_error(failure)
    return _server_error(500, "Internal error in the gateway.", "internal_error")


def _from_fault(fault: faults.Fault) -> ApiError:
    message = fault.message
    match fault:
        case faults.InvalidRequest():
            return ApiError(400, message, param=fault.param, code=fault.code)
        case faults.NotFound():
            return ApiError(404, message, code=fault.code)
        case faults.UnknownModel():
            return ApiError(404, message, param="model", code="model_not_found")
        case faults.Unauthenticated():
            return ApiError(401, message, code="invalid_api_key")
        case faults.ModelNotAllowed():
            return ApiError(403, message, param="model", code="model_not_allowed")
        case faults.McpServerNotAllowed():
            return ApiError(403, message, param=fault.param, code="mcp_server_not_allowed")
        case faults.McpServerFailed():
            # OpenAI's status for a server it cannot list: 424 Failed Dependency.
            return ApiError(424, message, type="external_connector_error", param=fault.param, code="mcp_server_failed")
        case faults.BackendBusy():
            return ApiError(
                429, message, type="rate_limit_error", code="backend_busy", headers={"Retry-After": str(fault.retry_after)}
            )
        case faults.ShuttingDown():
            return ApiError(
                503, message, type="server_error", code="shutting_down", headers={"Retry-After": "1", "Connection": "close"}
            )
        case faults.RequestTimedOut():
            return _server_error(504, message, "request_timeout")
        case faults.TemplateBroken():
            return _server_error(502, message, "chat_template_broken")
        case faults.CallRejected():
            return _server_error(502, message, "tool_arguments_invalid")
        case faults.CallBrokeOff():
            return _server_error(502, message, "malformed_tool_call")
        case faults.StoreFailed():
            return _server_error(500, message, "response_store_error")
        case faults.GenerationIncomplete():
            return _server_error(502, message, "generation_incomplete")
    return _server_error(500, message, "internal_error")


def _from_backend_error(error: BackendError) -> ApiError:
    """One status per kind of backend fault."""
    if isinstance(error, ContextLengthExceeded):
        return ApiError(400, error.message, param="messages", code="context_length_exceeded")
    if isinstance(error, BackendRejected):
        return ApiError(400 if error.status in (None, 400) else 502, error.message, code="backend_rejected")
    if isinstance(error, BackendTimeout):
        return _server_error(504, error.message, "backend_timeout")
    if isinstance(error, BackendUnreachable):
        return _server_error(502, error.message, "backend_unreachable")
    if isinstance(error, BackendProtocolError):
        return _server_error(502, error.message, "backend_protocol_error")
    if isinstance(error, TemplateUnavailable):
        return _server_error(502, error.message, "chat_template_unavailable")
    return _server_error(502, error.message, "backend_error")
