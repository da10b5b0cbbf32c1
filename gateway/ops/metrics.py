"""Prometheus metrics, one registry per app (no process-global state), served at GET /metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .metrics_shared import exposed_registry

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "toolwire_requests", "Requests by route, model, backend and status.", ["route", "model", "backend", "status"], registry=r
        )
        self.latency = Histogram(
            "toolwire_request_seconds", "Time to the last byte.", ["route", "model"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.first_token = Histogram(
            "toolwire_time_to_first_token_seconds", "Time until the backend's first text.", ["model"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.overhead = Histogram(
            "toolwire_gateway_overhead_seconds", "Time of a request not spent waiting on the backend.", ["route"],
            buckets=_OVERHEAD_BUCKETS, registry=r,
        )
        self.tokens = Counter("toolwire_tokens", "Tokens by model and direction (in, out).", ["model", "direction"], registry=r)
        self.tool_calls = Counter("toolwire_tool_calls", "Tool calls parsed, by format.", ["format"], registry=r)
        self.malformed_calls = Counter(
            "toolwire_malformed_tool_calls", "Calls that were not well-formed, by format.", ["format"], registry=r
        )
        self.repaired_calls = Counter(
            "toolwire_repaired_tool_calls",
            "Broken calls ended with valid JSON, by format and how (continued by the backend, or closed).",
            ["format", "how"],
            registry=r,
        )
        self.backend_errors = Counter(
            "toolwire_backend_errors", "Backend faults by backend and kind.", ["backend", "kind"], registry=r
        )
        # livesum: with several workers, the sum over the workers alive (ignored with one process).
        self.streams = Gauge("toolwire_streams_in_flight", "Streamed responses being sent now.", registry=r,
                             multiprocess_mode="livesum")
        self.backend_state = Gauge(
            "toolwire_backend_circuit_state", "Each backend's breaker: 0 closed, 1 half-open, 2 open.", ["backend"],
            registry=r,
        )
        self.backend_in_flight = Gauge(
            "toolwire_backend_in_flight", "Requests on each backend now (this replica).", ["backend"], registry=r
        )
        self.retries = Counter(
            "toolwire_backend_retries", "Attempts retried on another backend before the first byte.", ["model"], registry=r
        )
        self.resumes = Counter(
            "toolwire_stream_resumes", "Answers continued on another backend after theirs failed mid-answer.",
            ["model", "backend"], registry=r,
        )
        self.fallbacks = Counter(
            "toolwire_model_fallbacks", "Requests answered by a fallback model.", ["model", "fallback"], registry=r
        )
        # Run before each scrape, for gauges read from elsewhere (the breakers' shared state).
        self.before_scrape: list[Callable[[], Awaitable[None]]] = []

    async def handler(self, request: web.Request) -> web.Response:
        for hook in self.before_scrape:
            await hook()
        response = web.Response(body=generate_latest(exposed_registry(self.registry)))
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response
