"""Where `/v1/responses` keeps responses, for `GET`, `input_items` and `previous_response_id`.

One small async interface and two stores behind it: `SqliteStore`, an embedded file that survives
restarts, and `RedisStore`, shared by several gateway replicas. Both are bounded the same way: at
most `max_responses` (oldest evicted first) and nothing older than `max_age`.

Every entry has an owner (a digest of the API key that made it; "" without keys): a response is
found only by its owner, so no key reads, lists, deletes or continues another's responses.

A response is stored with its *full* input: the chain it continued and its own input items. So a
continuation needs one read, and it still works once an earlier link has been evicted or deleted.

Both stores also keep the reasoning of each reply that made calls, under its call ids, with the same
bounds (see reasoning_memory.py): a client that sends the calls back without their reasoning items
still gets the reasoning rendered.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import orjson

JsonObject = dict[str, Any]
Clock = Callable[[], float]
_T = TypeVar("_T")


class ResponseStore(Protocol):
    async def put(self, response: JsonObject, input_items: list[JsonObject], owner: str = "") -> None: ...

    async def get(self, response_id: str, owner: str = "") -> JsonObject | None: ...

    async def delete(self, response_id: str, owner: str = "") -> bool: ...

    async def input_items(self, response_id: str, owner: str = "") -> list[JsonObject] | None: ...

    async def remember(self, call_ids: Sequence[str], reasoning: str) -> None: ...

    async def recall(self, call_ids: Sequence[str]) -> str | None: ...

    async def close(self) -> None: ...


def entry_key(response_id: str, owner: str) -> str:
    """Where an owner's response lives: the same id under another owner is another entry."""
    return f"{owner}/{response_id}" if owner else response_id


def open_store(
    *, redis_url: str | None, sqlite_path: Path, max_responses: int, max_age_seconds: float
) -> ResponseStore:
    """The shared Redis store when a URL is given, else the embedded SQLite file."""
    if redis_url is not None:
        return RedisStore(redis_url, max_responses=max_responses, max_age_seconds=max_age_seconds)
    return SqliteStore(sqlite_path, max_responses=max_responses, max_age_seconds=max_age_seconds)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- insertion order: eviction by count drops the lowest
    id TEXT NOT NULL UNIQUE,
    stored_at REAL NOT NULL,
    response BLOB NOT NULL,
    input_items BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_stored_at ON responses (stored_at);
CREATE TABLE IF NOT EXISTS reasoning (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL UNIQUE,
    stored_at REAL NOT NULL,
    reasoning TEXT NOT NULL
);
"""


class SqliteStore:
    """The embedded default: one SQLite file, used from worker threads so the event loop never waits."""

    def __init__(self, path: Path, *, max_responses: int, max_age_seconds: float, clock: Clock = time.time) -> None:
        self._path = Path(path)
        self._max_responses = max_responses
        self._max_age = max_age_seconds
        self._clock = clock
        # The file is opened on first use, so a gateway that never serves /v1/responses creates none.
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one connection, one thread at a time

    async def put(self, response: JsonObject, input_items: list[JsonObject], owner: str = "") -> None:
        row = (entry_key(response["id"], owner), self._clock(), orjson.dumps(response), orjson.dumps(input_items))
        await self._run(self._put, row)

    def _put(self, db: sqlite3.Connection, row: tuple[str, float, bytes, bytes]) -> None:
        with db:  # one transaction: the insert and the evictions it causes
            db.execute("INSERT OR REPLACE INTO responses (id, stored_at, response, input_items) VALUES (?, ?, ?, ?)", row)
            db.execute("DELETE FROM responses WHERE stored_at < ?", (row[1] - self._max_age,))
            db.execute(
                "DELETE FROM responses WHERE seq <= (SELECT seq FROM responses ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self._max_responses,),
            )

    async def get(self, response_id: str, owner: str = "") -> JsonObject | None:
        return await self._read("response", entry_key(response_id, owner))

    async def input_items(self, response_id: str, owner: str = "") -> list[JsonObject] | None:
        return await self._read("input_items", entry_key(response_id, owner))

    async def _read(self, column: str, response_id: str) -> Any:
        def read(db: sqlite3.Connection) -> Any:
            # Expired rows may linger until the next put; they are never returned.
            row = db.execute(
                f"SELECT {column} FROM responses WHERE id = ? AND stored_at >= ?",  # the column name is ours, never input
                (response_id, self._clock() - self._max_age),
            ).fetchone()
            return None if row is None else orjson.loads(row[0])

        return await self._run(read)

    async def delete(self, response_id: str, owner: str = "") -> bool:
        key = entry_key(response_id, owner)

        def delete(db: sqlite3.Connection) -> bool:
            with db:
                return db.execute("DELETE FROM responses WHERE id = ?", (key,)).rowcount > 0

        return await self._run(delete)

    async def remember(self, call_ids: Sequence[str], reasoning: str) -> None:
        now = self._clock()

        def remember(db: sqlite3.Connection) -> None:
            with db:
                db.executemany("INSERT OR REPLACE INTO reasoning (call_id, stored_at, reasoning) VALUES (?, ?, ?)",
                               [(call_id, now, reasoning) for call_id in call_ids])
                db.execute("DELETE FROM reasoning WHERE stored_at < ?", (now - self._max_age,))
                db.execute("DELETE FROM reasoning WHERE seq <= (SELECT seq FROM reasoning ORDER BY seq DESC LIMIT 1 "
                           "OFFSET ?)", (self._max_responses,))

        await self._run(remember)

    async def recall(self, call_ids: Sequence[str]) -> str | None:
        def recall(db: sqlite3.Connection) -> str | None:
            for call_id in call_ids:
                row = db.execute("SELECT reasoning FROM reasoning WHERE call_id = ? AND stored_at >= ?",
                                 (call_id, self._clock() - self._max_age)).fetchone()
                if row is not None:
                    return str(row[0])
            return None

        return await self._run(recall)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                if self._connection is not None:
                    self._connection.close()
                    self._connection = None

        await asyncio.to_thread(close)

    async def _run(self, work: Callable[..., _T], *args: Any) -> _T:
        def locked() -> _T:
            with self._lock:
                return work(self._open(), *args)

        return await asyncio.to_thread(locked)

    def _open(self) -> sqlite3.Connection:
        if self._connection is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, timeout=10, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")  # readers in other processes never block a writer
            db.executescript(_SCHEMA)
            self._connection = db
        return self._connection


# One script, so the write and the evictions it causes are one atomic step: writers that race
# (one gateway's concurrent requests, or several replicas) never leave more or fewer than the bound.
# KEYS: index, response key, input key. ARGV: entry, response, input, ttl, now, max age, max count, prefix.
_PUT_SCRIPT = """
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[4])
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (tonumber(ARGV[5]) - tonumber(ARGV[6])))
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[7])
if excess > 0 then
  local evicted = redis.call('ZPOPMIN', KEYS[1], excess)
  for i = 1, #evicted, 2 do
    redis.call('DEL', ARGV[8] .. evicted[i], ARGV[8] .. evicted[i] .. ':input')
  end
end
return excess
"""


class RedisStore:
    """Shared by replicas: each response under its own keys with a TTL of max_age, and a sorted set
    (score: time stored) that evicts the oldest beyond max_responses, in one server-side script."""

    def __init__(
        self, url: str, *, max_responses: int, max_age_seconds: float, prefix: str = "toolwire:responses:"
    ) -> None:
        # Imported here: only gateways configured for Redis need the client library.
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import ExponentialBackoff

        # Connects on first command. A store that is down fails a request within about a second
        # (the client's default retries take several), and one that hangs within a few.
        self._redis = Redis.from_url(
            url, socket_connect_timeout=2, socket_timeout=5, retry=Retry(ExponentialBackoff(cap=0.5, base=0.1), 2)
        )
        self._max_responses = max_responses
        self._max_age = max_age_seconds
        self._ttl = max(1, math.ceil(max_age_seconds))
        self._prefix = prefix
        self._index = prefix + "index"
        self._put = self._redis.register_script(_PUT_SCRIPT)

    def _keys(self, response_id: str) -> tuple[str, str]:
        return self._prefix + response_id, self._prefix + response_id + ":input"

    async def put(self, response: JsonObject, input_items: list[JsonObject], owner: str = "") -> None:
        entry = entry_key(response["id"], owner)
        response_key, input_key = self._keys(entry)
        await self._put(
            keys=[self._index, response_key, input_key],
            args=[entry, orjson.dumps(response), orjson.dumps(input_items), self._ttl, repr(time.time()),
                  repr(self._max_age), self._max_responses, self._prefix],
        )

    async def get(self, response_id: str, owner: str = "") -> JsonObject | None:
        data = await self._redis.get(self._keys(entry_key(response_id, owner))[0])
        return None if data is None else orjson.loads(data)

    async def input_items(self, response_id: str, owner: str = "") -> list[JsonObject] | None:
        data = await self._redis.get(self._keys(entry_key(response_id, owner))[1])
        return None if data is None else orjson.loads(data)

    async def delete(self, response_id: str, owner: str = "") -> bool:
        entry = entry_key(response_id, owner)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*self._keys(entry))
            pipe.zrem(self._index, entry)
            deleted, _ = await pipe.execute()
        return deleted > 0

    def _reasoning_key(self, call_id: str) -> str:
        return f"{self._prefix}reasoning:{call_id}"

    async def remember(self, call_ids: Sequence[str], reasoning: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            for call_id in call_ids:
                pipe.set(self._reasoning_key(call_id), reasoning.encode(), ex=self._ttl)
            await pipe.execute()

    async def recall(self, call_ids: Sequence[str]) -> str | None:
        if not call_ids:
            return None
        for value in await self._redis.mget([self._reasoning_key(call_id) for call_id in call_ids]):
            if value is not None:
                return value.decode() if isinstance(value, bytes) else str(value)
        return None

    async def close(self) -> None:
        await self._redis.aclose()
