"""`POST /v1/debug/render` (off unless `debug.render_endpoint`): what a chat request would send
upstream — prompt, stop strings, constraint — without calling the backend."""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from ..core import prompt as prompts
from ..core.decoding import plan_decoding
from .chat_request import parse_chat_request
from .json_body import json_response, read_body
from .stream_driver import admit


async def render_prompt(request: web.Request) -> web.Response:
    job = parse_chat_request(await read_body(request))
    route = admit(request, job.model)
    upstream_model = route.upstream_for(job.model)
    template, tool_format = await route.template(upstream_model)
    prompt = await prompts.render_prompt(
        job.conversation, tool_format, template, extra_stop=route.stop + job.stop, mark_content=prompts.marks_content(route)
    )
    decoding = plan_decoding(job.conversation, tool_format, route.constraints, route.constrain, job.response_schema)
    return json_response(
        {
            "model": job.model,
            "backend": route.backend.name,
            "upstream_model": upstream_model,
            "tool_format": tool_format.name,
            "prompt": prompt.prompt + decoding.prefill,
            "prefill": decoding.prefill,
            "stop": list(prompt.stop),
            "preserved_tokens": list(prompt.preserved_tokens),
            "constraint": asdict(decoding.constraint) if decoding.constraint else None,
            # The client's text in `prompt`, sent to be tokenized as plain text; null: it could not be traced.
            "plain_spans": [list(span) for span in prompt.content_spans] if prompt.content_spans is not None else None,
        }
    )
