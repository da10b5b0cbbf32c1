"""What one request did, gathered as it runs: for the access log line and the metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from adapters.backends import Usage


@dataclass(slots=True)
class RequestTrace:
    request_id: str
    route: str  # which API: chat, responses, models, ...
    debug: bool = False  # log the rendered prompt and the raw model output
    started: float = field(default_factory=time.perf_counter)
    model: str = ""
    backend: str = ""
    tool_format: str = ""
    # Time spent waiting on the backend (connect, prompt processing, generation): the rest of
    # the request is the gateway's own overhead.
    backend_wait: float = 0.0
    first_token: float | None = None  # seconds from start to the backend's first text
    usage: Usage | None = None
    tool_calls: int = 0
    malformed_calls: int = 0
    repaired_calls: int = 0
    continued_calls: int = 0  # repaired by continuation (the rest of `repaired_calls` were closed)
    error_kind: str = ""
    # Several backends per model: which were tried, in order; retries before the first byte,
    # resumes after it; the fallback model that answered instead, if any.
    backends_tried: list[str] = field(default_factory=list)
    retries: int = 0
    resumes: int = 0
    fallback: str = ""

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def mark_first_token(self) -> None:
        if self.first_token is None:
            self.first_token = self.elapsed()
