"""Typed keys for what the app and each request carry (aiohttp's AppKey / RequestKey)."""

from __future__ import annotations

from aiohttp import web

from .auth import ApiKey, KeyRing
from .config import GatewayConfig
from .lifecycle_state import Lifecycle
from .metrics import Metrics
from .observe import RequestTrace
from .routing import RoutingTable

ROUTING_TABLE = web.AppKey("routing_table", RoutingTable)
STARTED_AT = web.AppKey("started_at", float)
CONFIG = web.AppKey("config", GatewayConfig)
METRICS = web.AppKey("metrics", Metrics)
KEY_RING = web.AppKey("key_ring", KeyRing)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)

TRACE = web.RequestKey("trace", RequestTrace)
API_KEY = web.RequestKey("api_key", ApiKey)
