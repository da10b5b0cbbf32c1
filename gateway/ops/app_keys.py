"""Typed keys for what the app and each request carry (aiohttp's AppKey / RequestKey)."""

from __future__ import annotations

from aiohttp import web

from adapters.backends.managed import Fleet

from ..core.rate_limits import KeyRateLimits
from ..core.reasoning_memory import ReasoningMemory
from ..core.routing import RoutingTable
from ..core.state import SharedState
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
FLEET = web.AppKey("fleet", Fleet)  # the llama-servers toolwire launched
SHARED_STATE = web.AppKey("shared_state", SharedState)
RATE_LIMITS = web.AppKey("rate_limits", KeyRateLimits)
# Where chat completions keep call turns' reasoning: Redis when the Responses store is Redis, else this process.
CHAT_REASONING = web.AppKey("chat_reasoning", ReasoningMemory)

TRACE = web.RequestKey("trace", RequestTrace)
API_KEY = web.RequestKey("api_key", ApiKey)
# The response whose headers are already out: nothing may write another response after it.
STREAM = web.RequestKey("stream", web.StreamResponse)
