"""A strict HTTP/1.1 client for checking what really goes over the wire: the status line, the
headers and every chunk of a chunked body, so a corrupted stream cannot hide behind a lenient SDK."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True)
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    clean_end: bool  # the chunked body ended with its zero-length chunk


class BrokenFraming(AssertionError):
    """The bytes after the headers are not a well-formed chunked body."""


async def raw_post(url: str, body: object | bytes, *, headers: dict[str, str] | None = None, timeout: float = 20) -> RawReply:
    """POST JSON over one fresh connection and read the whole answer, checking its framing."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    writer.write(
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n{extra}Connection: close\r\n\r\n".encode() + payload
    )
    await writer.drain()
    try:
        async with asyncio.timeout(timeout):
            data = await reader.read(-1)
    finally:
        writer.close()
    return parse_reply(data)


def parse_reply(data: bytes) -> RawReply:
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") != "chunked":
        return RawReply(status, headers, rest, clean_end=True)
    body, clean = bytearray(), False
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            raise BrokenFraming(f"a chunk size line without its end: {size_line[:80]!r}")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            raise BrokenFraming(f"not a chunk size: {size_line[:80]!r} (after {bytes(body[-200:])!r})") from None
        if size == 0:
            clean = rest.startswith(b"\r\n")
            rest = rest[2:]
            if rest:
                raise BrokenFraming(f"bytes after the last chunk: {rest[:80]!r}")
            break
        if len(rest) < size + 2 or rest[size : size + 2] != b"\r\n":
            raise BrokenFraming("a chunk shorter than its size")
        body += rest[:size]
        rest = rest[size + 2 :]
    return RawReply(status, headers, bytes(body), clean_end=clean)


def sse_data(body: bytes) -> list[object]:
    """The JSON of every `data:` line of an SSE body (`[DONE]` as the string)."""
    out: list[object] = []
    for line in body.split(b"\n"):
        if line.startswith(b"data: "):
            data = line[6:]
            out.append("[DONE]" if data == b"[DONE]" else orjson.loads(data))
    return out
