"""Typed keys for what the app and each request carry (aiohttp's AppKey / RequestKey)."""

from __future__ import annotations

from aiohttp import web

from ..core.routing import RoutingTable
from ..core.trace import RequestTrace
from .auth import ApiKey, KeyRing
from .config import GatewayConfig
from .lifecycle import Lifecycle
from .metrics import Metrics

ROUTING_TABLE = web.AppKey("routing_table", RoutingTable)
STARTED_AT = web.AppKey("started_at", float)
CONFIG = web.AppKey("config", GatewayConfig)
METRICS = web.AppKey("metrics", Metrics)
KEY_RING = web.AppKey("key_ring", KeyRing)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

TRACE = web.RequestKey("trace", RequestTrace)
API_KEY = web.RequestKey("api_key", ApiKey)
# The response whose headers are already out: nothing may write another response after it.
STREAM = web.RequestKey("stream", web.StreamResponse)
