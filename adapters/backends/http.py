"""HTTP plumbing every backend shares: one pooled session, timeouts, and fault mapping.

Backends only say what to send and how to read the answer; turning connection failures,
timeouts and error statuses into `BackendError`s lives here, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from yarl import URL

from .errors import (
    BackendError,
    BackendProtocolError,
    BackendRejected,
    BackendTimeout,
    BackendUnreachable,
    ContextLengthExceeded,
)
from .lines import DEFAULT_MAX_LINE_BYTES, read_lines

log = structlog.get_logger("toolwire.backends")


@dataclass(frozen=True, slots=True)
class HttpSettings:
    base_url: str
    api_key: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 300.0  # max silence between two bytes, not a cap on the whole answer
    max_connections: int = 64
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES  # the longest stream line accepted


class BackendHttp:
    """A pooled HTTP client for one backend. Create inside a running event loop."""

    def __init__(self, backend: str, settings: HttpSettings) -> None:
        self.backend = backend
        self.settings = settings
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        self._session = aiohttp.ClientSession(
            base_url=settings.base_url.rstrip("/") + "/",
            headers=headers,
            connector=aiohttp.TCPConnector(limit=settings.max_connections),
            timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=settings.connect_timeout, sock_read=settings.read_timeout
            ),
            json_serialize=lambda value: orjson.dumps(value).decode(),
        )

    @property
    def location(self) -> str:
        """The base URL as logs may show it: without credentials."""
        return without_credentials(self.settings.base_url)

    async def close(self) -> None:
        await self._session.close()

    @asynccontextmanager
    async def request(
        self, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request; yield the response if it succeeded, raise a `BackendError` if not."""
        url = path.lstrip("/")
        try:
            async with self._session.request(method, url, json=payload) as response:
                if response.status >= 400:
                    body = await response.read()
                    raise self.http_error(response.status, body)
                yield response
        except BackendError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as error:
            raise BackendTimeout(
                self.backend, f"backend '{self.backend}' did not answer in time ({type(error).__name__})"
            ) from error
        except aiohttp.ClientConnectorError as error:
            # Where it is and why it failed go to the log; the client learns only which backend.
            log.warning("backend_unreachable", backend=self.backend, url=self.location, path=path,
                        error=redact(str(error.os_error), self.settings.base_url))
            raise BackendUnreachable(self.backend, f"backend '{self.backend}' is unreachable") from error
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as error:
            raise BackendProtocolError(
                self.backend, f"backend '{self.backend}' closed the connection mid-answer"
            ) from error
        except aiohttp.ClientError as error:
            log.warning("backend_request_failed", backend=self.backend, url=self.location, path=path,
                        error=redact(_describe(error), self.settings.base_url))
            raise BackendUnreachable(self.backend, f"backend '{self.backend}' failed ({type(error).__name__})") from error

    def lines(self, response: aiohttp.ClientResponse) -> AsyncIterator[list[bytes]]:
        """The streamed body as batches of lines, one batch per read (see `lines.read_lines`)."""
        return read_lines(response, self.backend, self.settings.max_line_bytes)

    async def get_json(self, path: str) -> Any:
        async with self.request("GET", path) as response:
            return parse_json(self.backend, await response.read())

    async def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        async with self.request("POST", path, payload) as response:
            return parse_json(self.backend, await response.read())

    def http_error(self, status: int, body: bytes) -> BackendError:
        message, kind = error_message(body)
        text = f"backend '{self.backend}' answered HTTP {status}: {message}"
        if kind in ("exceed_context_size_error", "context_length_exceeded"):
            return ContextLengthExceeded(self.backend, text, status=status)
        if 400 <= status < 500 and status not in (401, 403, 404, 408, 429):
            return BackendRejected(self.backend, text, status=status)
        return BackendError(self.backend, text, status=status)


def without_credentials(url: str) -> str:
    """`url` with any user and password removed (they are sent as basic auth, never shown)."""
    try:
        parsed = URL(url)
    except ValueError:
        return "(invalid URL)"
    return str(parsed.with_user(None)) if parsed.user or parsed.password else url


def redact(text: str, url: str) -> str:
    """`text` with the URL's credentials blanked wherever they appear."""
    try:
        parsed = URL(url)
    except ValueError:
        return text
    for secret in (parsed.password, parsed.raw_password, parsed.user, parsed.raw_user):
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_json(backend: str, data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise BackendProtocolError(backend, f"backend '{backend}' sent invalid JSON: {error}") from error


def error_message(body: bytes | dict[str, Any] | str) -> tuple[str, str]:
    """The message and type of a backend's error body, whatever its shape."""
    data: Any = body
    if isinstance(body, bytes):
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body.decode(errors="replace").strip()[:500] or "(empty body)", ""
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            # `detail` is FastAPI's shape (e.g. a vLLM URL that wrongly ends in /v1).
            return str(error.get("message") or error.get("detail") or error), str(error.get("type") or "")
        return str(error), ""
    return str(data), ""


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__
