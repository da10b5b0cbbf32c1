"""From a conversation to the exact text and stop strings sent to the backend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from adapters.formats import ToolFormat
from adapters.formats.conversation import Conversation

from .bounded import Overran, run_bounded
from .chat_template import ChatTemplate, TemplateError, TemplateRejected, TemplateTooLarge
from .content_marks import Span, trace_content
from .faults import ConversationRejected, TemplateBroken
from .routing import Route
from .turns import merge_same_role_turns

log = structlog.get_logger("toolwire.prompt")

# The longest a render may take (a template comes from a model file or a backend: a stranger's code).
RENDER_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class PromptPlan:
    prompt: str
    stop: tuple[str, ...]
    preserved_tokens: tuple[str, ...]
    bos_token: str
    # Where the client's text lies in `prompt` (see content_marks): () when not asked for, None when
    # the template's render could not be traced back to it.
    content_spans: tuple[Span, ...] | None = ()


def marks_content(route: Route) -> bool:
    """Whether to find the client's text in the prompt: the route wants it and its backend uses it."""
    return route.plain_content and "plain_spans" in getattr(route.backend, "features", frozenset())


async def render_prompt(
    conversation: Conversation, tool_format: ToolFormat, template: ChatTemplate, *, extra_stop: tuple[str, ...] = (),
    mark_content: bool = False,
) -> PromptPlan:
    """`build_prompt` in a worker thread, stopped after RENDER_SECONDS: no template stalls the gateway."""
    try:
        return await run_bounded(
            lambda: build_prompt(conversation, tool_format, template, extra_stop=extra_stop, mark_content=mark_content),
            RENDER_SECONDS,
        )
    except Overran:
        raise TemplateBroken(f"The model's chat template took longer than {RENDER_SECONDS:g}s to render.") from None


def build_prompt(
    conversation: Conversation,
    tool_format: ToolFormat,
    template: ChatTemplate,
    *,
    extra_stop: tuple[str, ...] = (),
    mark_content: bool = False,
) -> PromptPlan:
    """Render the conversation with the model's own template, in the route's tool format; with
    `mark_content`, also find where the client's text lies in it."""
    try:
        prompt = _render_conversation(conversation, tool_format, template)
    except TemplateRejected as error:
        # The template's own raise_exception: it refuses this conversation, the client's to change.
        raise ConversationRejected(f"The model's chat template rejected this conversation: {error}") from error
    except TemplateTooLarge as error:
        log.error("chat_template_failed", template=template.origin, error=str(error))
        raise TemplateBroken(f"The model's chat template exceeded its limits: {error}") from error
    except TemplateError as error:
        # Anything else is the template failing at its job: the server's fault, named for the operator.
        log.error("chat_template_failed", template=template.origin, error=str(error))
        raise TemplateBroken(f"The model's chat template failed to render this conversation: {error}") from error
    # Stop at the end of the assistant turn as the template writes it, even when the backend
    # does not treat that text as a special token (a base model writes it as plain text).
    stop = list(template.caps.end_of_turn)
    if template.eos_token:
        stop.append(template.eos_token)
    stop.extend(tool_format.stop_strings)
    stop.extend(extra_stop)
    bos = template.bos_token if template.bos_token and prompt.startswith(template.bos_token) else ""
    return PromptPlan(
        prompt=prompt,
        stop=tuple(dict.fromkeys(s for s in stop if s)),
        # Always: reasoning and channel markers must reach the parser even without tools.
        preserved_tokens=tool_format.preserved_tokens,
        bos_token=bos,
        content_spans=(
            trace_content(conversation, prompt, lambda marked: _render_conversation(marked, tool_format, template))
            if mark_content
            else ()
        ),
    )


def _render_conversation(conversation: Conversation, tool_format: ToolFormat, template: ChatTemplate) -> str:
    template_input = tool_format.template_input(conversation, template.caps)
    return _render(template, template_input.messages, template_input.tools)


def _render(template: ChatTemplate, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    try:
        return template.render(messages, tools=tools, add_generation_prompt=True)
    except TemplateRejected:
        # Templates that insist on alternating roles (Gemma, Mistral) refuse runs of same-role turns
        # that clients send as a matter of course: merge them and ask again. Only then, since a
        # template that takes the run as it is (Mistral's text turn before a call turn) shows more.
        merged = merge_same_role_turns(messages)
        if merged == messages:
            raise
        return template.render(merged, tools=tools, add_generation_prompt=True)
