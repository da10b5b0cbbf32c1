"""How long a chat job's prompt is, in the backend's own tokens, without generating.

The prompt is rendered exactly as `run_chat` renders it (template, tool format, prefilled call
opening), so the count is what the same request would be charged as input.
"""

from __future__ import annotations

from adapters.backends import GenerationRequest

from .decoding import plan_decoding
from .faults import Unsupported
from .job import ChatJob
from .prompt import build_prompt, marks_content
from .routing import Route


async def count_prompt_tokens(job: ChatJob, route: Route) -> int:
    upstream_model = route.upstream_for(job.model)
    template, tool_format = await route.template(upstream_model)
    prompt = build_prompt(job.conversation, tool_format, template, extra_stop=route.stop + job.stop,
                          mark_content=marks_content(route))
    decoding = plan_decoding(job.conversation, tool_format, route.backend.constraints, route.constrain,
                             job.response_schema)
    request = GenerationRequest(
        prompt=prompt.prompt + job.continues + decoding.prefill,
        upstream_model=upstream_model,
        bos_token=prompt.bos_token,
        eos_token=template.eos_token,
        plain_spans=job.plain_spans(prompt.prompt, prompt.content_spans),
    )
    count = await route.backend.count_tokens(request)
    if count is None:
        raise Unsupported(
            f"Backend '{route.backend.name}' has no tokenizer endpoint, so its tokens cannot be counted "
            "(llama.cpp and vLLM backends have one).",
            code="token_count_unsupported",
        )
    return count
