"""Backend faults, by kind. The gateway maps each kind to one HTTP status and error shape."""

from __future__ import annotations


class BackendError(Exception):
    """A backend could not give a complete answer."""

    kind = "backend_error"

    def __init__(self, backend: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.backend = backend
        self.message = message
        # The backend's own HTTP status, when it answered with one.
        self.status = status


class BackendUnreachable(BackendError):
    kind = "backend_unreachable"


class BackendTimeout(BackendError):
    kind = "backend_timeout"


class BackendRejected(BackendError):
    """The backend answered with an error about the request (HTTP 4xx or an in-band error)."""

    kind = "backend_rejected"


class BackendProtocolError(BackendError):
    """The backend's answer did not follow its wire format (bad JSON, stream cut short)."""

    kind = "backend_protocol_error"


class ContextLengthExceeded(BackendRejected):
    kind = "context_length_exceeded"


class TemplateUnavailable(BackendError):
    kind = "template_unavailable"


class BackendLoadFailed(BackendError):
    """A backend toolwire launches itself could not be started (or keeps dying): the model named
    is not available now. `log_tail` holds the server's last log lines, for the error message."""

    kind = "backend_load_failed"

    def __init__(
        self, backend: str, model: str, reason: str, *, log_tail: tuple[str, ...] = (), retry_after: float = 1.0
    ) -> None:
        tail = "\n".join(log_tail)
        message = f"model '{model}' (backend '{backend}') failed to load: {reason}"
        if tail:
            message += f"\nlast lines of llama-server's log:\n{tail}"
        super().__init__(backend, message)
        self.model = model
        self.reason = reason
        self.log_tail = log_tail
        self.retry_after = retry_after
