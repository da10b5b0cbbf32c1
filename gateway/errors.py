"""OpenAI-shaped errors: `{"error": {"message", "type", "param", "code"}}` with an HTTP status.

Every failure the client sees goes through `ApiError`, so the shape lives in one place.
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


def bad_request(message: str, *, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


def model_not_found(model: str, known: list[str]) -> ApiError:
    hint = f" Available models: {', '.join(known)}." if known else ""
    return ApiError(
        404,
        f"The model '{model}' does not exist or you do not have access to it.{hint}",
        param="model",
        code="model_not_found",
    )


def from_backend_error(error: BackendError) -> ApiError:
    """One status per kind of backend fault."""
    if isinstance(error, ContextLengthExceeded):
        return ApiError(400, error.message, param="messages", code="context_length_exceeded")
    if isinstance(error, BackendRejected):
        return ApiError(400 if error.status in (None, 400) else 502, error.message, code="backend_rejected")
    if isinstance(error, BackendTimeout):
        return ApiError(504, error.message, type="server_error", code="backend_timeout")
    if isinstance(error, BackendUnreachable):
        return ApiError(502, error.message, type="server_error", code="backend_unreachable")
    if isinstance(error, BackendProtocolError):
        return ApiError(502, error.message, type="server_error", code="backend_protocol_error")
    if isinstance(error, TemplateUnavailable):
        return ApiError(502, error.message, type="server_error", code="chat_template_unavailable")
    return ApiError(502, error.message, type="server_error", code="backend_error")
