"""What can go wrong with a request, in the gateway's own terms.

The core raises these the way backends raise `BackendError` kinds; none of them knows HTTP.
`gateway/api/errors.py` decides, in one place, which status and error shape each becomes.
"""

from __future__ import annotations


class Fault(Exception):
    """Base of every failure the gateway reports to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(Fault):
    """The request itself is wrong: a field, a value, a conversation the model cannot take."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


class ConversationRejected(InvalidRequest):
    """The model's chat template refused this conversation (its own `raise_exception`)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="messages", code="template_error")


class NotFound(Fault):
    """A stored object the request names does not exist (or is not the caller's)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class Unsupported(Fault):
    """The request is valid, but what it asks of this route is something its backend cannot do."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class UnknownModel(Fault):
    def __init__(self, model: str, known: list[str]) -> None:
        hint = f" Available models: {', '.join(known)}." if known else ""
        super().__init__(f"The model '{model}' does not exist or you do not have access to it.{hint}")
        self.model = model


class Unauthenticated(Fault):
    """No key, or a key the gateway does not know."""


class ModelNotAllowed(Fault):
    def __init__(self, model: str) -> None:
        super().__init__(f"This API key may not use the model '{model}'.")
        self.model = model


class BackendBusy(Fault):
    """A backend's concurrency limit and queue are full: come back shortly."""

    def __init__(self, backend: str, why: str, retry_after: int) -> None:
        super().__init__(f"Backend '{backend}' is at its concurrency limit and {why}; retry shortly.")
        self.backend = backend
        self.retry_after = retry_after


class NoBackendAvailable(Fault):
    """Every backend of a model is out (its circuit open) for now."""

    def __init__(self, model: str, backends: list[str]) -> None:
        super().__init__(f"No backend of the model '{model}' is available right now ({', '.join(backends)}: out "
                         "after repeated failures); retry shortly.")
        self.model = model


class RateLimited(Fault):
    """An API key used up its requests or tokens for this minute."""

    def __init__(self, what: str, limit: int, retry_after: int) -> None:
        super().__init__(f"Rate limit reached: {limit} {what} per minute for this API key. Retry in {retry_after}s.")
        self.retry_after = retry_after


class ShuttingDown(Fault):
    def __init__(self) -> None:
        super().__init__("The gateway is shutting down; retry on another instance.")


class RequestTimedOut(Fault):
    def __init__(self, limit: float) -> None:
        super().__init__(f"The request took longer than the gateway's limit of {limit:g}s.")
        self.limit = limit


class TemplateBroken(Fault):
    """The model's chat template cannot be used at all: the server's fault, not the client's."""


class CallRejected(Fault):
    """A call to a `strict` tool does not match the tool's parameters."""

    def __init__(self, name: str, problems: list[str]) -> None:
        super().__init__(f"The model's call to '{name}' does not match the tool's parameters: {'; '.join(problems)}")
        self.name = name


class CallBrokeOff(Fault):
    """A streamed call broke after its fragments went out, so it cannot be returned as text."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"The model's tool call #{index} broke off after it had begun streaming ({reason}).")
        self.index = index


class GenerationIncomplete(Fault):
    def __init__(self) -> None:
        super().__init__("The generation ended without a result.")


class StoreFailed(Fault):
    def __init__(self) -> None:
        super().__init__("Could not store the response.")


class OutputTooLarge(Fault):
    """A collected (non-streamed) answer grew past the gateway's cap; the generation was stopped."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The answer grew past the gateway's limit of {limit} characters for a non-streamed "
                         "reply; stream it, or ask for fewer tokens.")
        self.limit = limit


class ClientGone(Fault):
    """The client closed its connection before its answer was ready."""

    def __init__(self) -> None:
        super().__init__("The client went away.")


class McpServerNotAllowed(Fault):
    """The caller's key may not use this MCP server."""

    def __init__(self, label: str, param: str) -> None:
        super().__init__(f"This API key may not use the MCP server '{label}'.")
        self.label = label
        self.param = param


class McpServerFailed(Fault):
    """An MCP server the request needs could not be reached or would not list its tools."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param
