"""Splitting an upstream body into lines as it arrives, one batch of lines per socket read.

aiohttp's own line iteration fails on a line longer than its buffer limit, and llama-server's
final event echoes the whole prompt in one line. Here a line may be as long as the backend's
`max_line_bytes`; past that the stream ends with a clean `BackendProtocolError`. Reading
whatever has arrived at once (not line by line) lets the layers above handle every line of one
read in one go, which is what keeps the per-chunk cost low under load.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp

from .errors import BackendProtocolError, BackendTimeout

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


class LineSplitter:
    """Feeds of bytes in, complete lines out (without their `\\n`). Linear in the line's length,
    however many reads a long line takes."""

    def __init__(self, backend: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._backend = backend
        self._max = max_line_bytes
        self._partial: list[bytes] = []  # the start of a line not yet ended, in pieces
        self._partial_size = 0

    def feed(self, data: bytes) -> list[bytes]:
        newline = data.find(b"\n")
        if newline < 0:
            self._hold(data)
            return []
        if self._partial:
            self._partial.append(data[:newline])
            first = b"".join(self._partial)
            self._partial, self._partial_size = [], 0
            self._check(len(first))
            lines = [first, *data[newline + 1 :].split(b"\n")]
        else:
            lines = data.split(b"\n")
        rest = lines.pop()
        if rest:
            self._hold(rest)
        if self._max < len(data):  # only a read longer than the limit can hold a line that is
            for line in lines:
                self._check(len(line))
        return lines

    def close(self) -> list[bytes]:
        """The last line, when the body does not end with a newline."""
        last = b"".join(self._partial)
        self._partial, self._partial_size = [], 0
        return [last] if last else []

    def _hold(self, data: bytes) -> None:
        self._partial.append(data)
        self._partial_size += len(data)
        self._check(self._partial_size)

    def _check(self, size: int) -> None:
        if size > self._max:
            raise BackendProtocolError(
                self._backend,
                f"backend '{self._backend}' sent a line longer than max_line_bytes ({self._max} bytes)",
            )


async def read_lines(
    response: aiohttp.ClientResponse, backend: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> AsyncIterator[list[bytes]]:
    """The response body as lists of complete lines, one list per read that completed any line;
    faults mid-stream become `BackendError`s."""
    splitter = LineSplitter(backend, max_line_bytes)
    try:
        async for data in response.content.iter_any():
            lines = splitter.feed(data)
            if lines:
                yield lines
    except (TimeoutError, aiohttp.ServerTimeoutError) as error:
        raise BackendTimeout(backend, f"backend '{backend}' stopped sending mid-answer (read timeout)") from error
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError) as error:
        raise BackendProtocolError(backend, f"backend '{backend}' closed the connection mid-answer") from error
    last = splitter.close()
    if last:
        yield last
