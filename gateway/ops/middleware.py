"""The chain every request passes: trace and errors (outermost), CORS, draining, API keys."""

from __future__ import annotations

import secrets
import traceback
from typing import Any

import structlog
from aiohttp import web

from adapters.backends.errors import BackendError

from ..api.errors import ApiError, api_error, error_shape
from ..api.json_body import error_response
from ..core.faults import Fault, ShuttingDown
from ..core.trace import RequestTrace
from .app_keys import API_KEY, CONFIG, KEY_RING, LIFECYCLE, METRICS, STREAM, TRACE

log = structlog.get_logger("toolwire.http")

# Paths open without a key: probes and scrapers do not carry one.
_OPEN_PATHS = ("/health", "/metrics")
_MAX_REQUEST_ID = 128


def _api_route(path: str) -> str:
    for prefix, name in (("/v1/chat/completions", "chat"), ("/v1/responses", "responses"), ("/v1/messages", "messages"),
                         ("/v1/models", "models")):
        if path.startswith(prefix):
            return name
    return path.strip("/").split("/")[0] or "root"


@web.middleware
async def observe_and_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Gives the request an id and a trace, turns every failure into an error in the shape of the
    API the path speaks (OpenAI's, or Anthropic's for /v1/messages), and writes the access log line and the metrics when it ends."""
    request_id = (request.headers.get("X-Request-ID") or "")[:_MAX_REQUEST_ID] or "req_" + secrets.token_hex(12)
    config = request.app[CONFIG]
    trace = RequestTrace(request_id, _api_route(request.path), debug=config.debug.log_prompts)
    request[TRACE] = trace
    try:
        response = await handler(request)
    except (ApiError, Fault) as error:
        response = _error(request, request_id, api_error(error))
    except BackendError as error:
        trace.error_kind = error.kind
        response = _error(request, request_id, api_error(error))
    except web.HTTPException as error:
        if error.status < 400:
            raise
        response = _error(request, request_id, _http_exception(error))
    except Exception as error:  # noqa: BLE001 - logged below, with its traceback
        # A plain traceback, never the frames' locals: they hold configs, keys and request bodies.
        log.error("unhandled_error", path=request.path, request_id=request_id, error=repr(error)[:500],
                  traceback="".join(traceback.format_exception(error, limit=-12))[-8000:])
        response = _error(request, request_id, api_error(RuntimeError()))
    started = request.get(STREAM)
    if started is not None and response is not started:
        # Headers and part of a stream are out: another response now would land inside its body.
        # The stream driver ends its streams itself; this only guards against a failure it missed.
        log.error("failure_after_stream_began", request_id=request_id, status=response.status)
        response = started
    if not response.prepared:
        response.headers["X-Request-ID"] = request_id
    _record(request, response, trace)
    return response


def _error(request: web.Request, request_id: str, failure: ApiError) -> web.Response:
    shape = error_shape(request.path, request.headers)
    return error_response(failure, shape, request_id if shape == "anthropic" else None)


def _record(request: web.Request, response: web.StreamResponse, trace: RequestTrace) -> None:
    elapsed = trace.elapsed()
    metrics = request.app[METRICS]
    status = str(response.status)
    metrics.requests.labels(trace.route, trace.model, trace.backend, status).inc()
    if trace.model:
        metrics.latency.labels(trace.route, trace.model).observe(elapsed)
        metrics.overhead.labels(trace.route).observe(max(0.0, elapsed - trace.backend_wait))
    if trace.first_token is not None:
        metrics.first_token.labels(trace.model).observe(trace.first_token)
    if trace.usage is not None:
        metrics.tokens.labels(trace.model, "in").inc(trace.usage.prompt_tokens)
        metrics.tokens.labels(trace.model, "out").inc(trace.usage.completion_tokens)
    if trace.tool_calls:
        metrics.tool_calls.labels(trace.tool_format).inc(trace.tool_calls)
    if trace.malformed_calls:
        metrics.malformed_calls.labels(trace.tool_format).inc(trace.malformed_calls)
    if trace.repaired_calls:
        metrics.repaired_calls.labels(trace.tool_format, "closed").inc(trace.repaired_calls)
    if trace.continued_calls:
        metrics.repaired_calls.labels(trace.tool_format, "continued").inc(trace.continued_calls)
    if trace.error_kind:
        metrics.backend_errors.labels(trace.backend, trace.error_kind).inc()
    if trace.retries:
        metrics.retries.labels(trace.model).inc(trace.retries)
    if trace.resumes:
        metrics.resumes.labels(trace.model, trace.backend).inc(trace.resumes)
    if trace.fallback:
        metrics.fallbacks.labels(trace.model, trace.fallback).inc()
    log.info(
        "request",
        request_id=trace.request_id,
        method=request.method,
        path=request.path,
        status=response.status,
        model=trace.model or None,
        backend=trace.backend or None,
        duration_ms=round(elapsed * 1000, 2),
        backend_ms=round(trace.backend_wait * 1000, 2),
        first_token_ms=round(trace.first_token * 1000, 2) if trace.first_token is not None else None,
        prompt_tokens=trace.usage.prompt_tokens if trace.usage else None,
        completion_tokens=trace.usage.completion_tokens if trace.usage else None,
        tool_calls=trace.tool_calls or None,
        backends_tried=trace.backends_tried if len(trace.backends_tried) > 1 else None,
        retries=trace.retries or None,
        resumes=trace.resumes or None,
        fallback=trace.fallback or None,
    )


def _http_exception(error: web.HTTPException) -> ApiError:
    if error.status == 404:
        return ApiError(404, "Unknown path. toolwire serves /v1/models, /v1/chat/completions, /v1/responses and /v1/messages.", code="not_found")
    if error.status == 405:
        return ApiError(405, f"Method not allowed: {error.reason}", code="method_not_allowed")
    if error.status == 413:
        return ApiError(413, "The request body is too large.", code="request_too_large")
    return ApiError(error.status, error.reason or "HTTP error")


@web.middleware
async def cors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Off unless origins are configured: then those origins (or `*`) may call the API."""
    allowed = request.app[CONFIG].cors.allow_origins
    origin = request.headers.get("Origin")
    if not allowed or not origin or not ("*" in allowed or origin in allowed):
        return await handler(request)
    headers = {"Access-Control-Allow-Origin": "*" if "*" in allowed else origin, "Vary": "Origin"}
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        headers |= {
            "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": "Authorization, Content-Type, X-Request-ID, X-Api-Key, Anthropic-Version, "
            "Anthropic-Beta, Anthropic-Dangerous-Direct-Browser-Access",
            "Access-Control-Max-Age": "600",
        }
        return web.Response(status=204, headers=headers)
    response = await handler(request)
    if not response.prepared:
        response.headers.update(headers)
    return response


@web.middleware
async def drain_guard(request: web.Request, handler: Any) -> web.StreamResponse:
    """While shutting down, new API requests are refused; the ones in flight are counted."""
    if request.path.startswith(_OPEN_PATHS):
        return await handler(request)
    lifecycle = request.app[LIFECYCLE]
    if lifecycle.draining:
        raise ShuttingDown()
    lifecycle.enter()
    try:
        return await handler(request)
    finally:
        lifecycle.leave()


@web.middleware
async def require_key(request: web.Request, handler: Any) -> web.StreamResponse:
    keys = request.app[KEY_RING]
    if keys.enabled and not request.path.startswith(_OPEN_PATHS) and request.method != "OPTIONS":
        # Anthropic's clients send the key as `x-api-key`; OpenAI's as a bearer token.
        request[API_KEY] = keys.authenticate(request.headers.get("Authorization"), request.headers.get("X-Api-Key"))
    return await handler(request)


MIDDLEWARES = (observe_and_errors, cors, drain_guard, require_key)
