"""gateway.core.chat_template against the real templates in ../shared/fixtures/chat_templates.

Three kinds of check: every template renders the conversations a gateway sends (or fails with its own,
expected message); our output is byte-identical to transformers' reference renderer; and the probed
caps match what reading each template says they should be.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from transformers.utils.chat_template_utils import render_jinja_template

from gateway.core.chat_template import (
    ChatTemplate,
    TemplateCaps,
    TemplateError,
    TemplateRejected,
    load_template_file,
)

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "chat_templates"
ALL_FIXTURES = sorted(path.name.removesuffix(".jinja") for path in FIXTURES.glob("*.jinja"))

# (bos_token, eos_token) per fixture, as the model family's tokenizer_config.json sets them.
LLAMA3 = ("<|begin_of_text|>", "<|eot_id|>")
QWEN = ("", "<|im_end|>")
MISTRAL = ("<s>", "</s>")
GEMMA = ("<bos>", "<eos>")
DEEPSEEK = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>")
GRANITE = ("", "<|end_of_text|>")
PHI4 = ("", "<|endoftext|>")
COHERE = ("<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>")
KIMI = ("[BOS]", "[EOS]")
LFM2 = ("<|startoftext|>", "<|im_end|>")
SPECIAL_TOKENS: dict[str, tuple[str, str]] = {
    "Apriel-1.6-15b-Thinker-fixed": ("<s>", "<|end|>"),
    "ByteDance-Seed-OSS": ("<seed:bos>", "<seed:eos>"),
    "GLM-4.7-Flash": ("", "<|endoftext|>"),
    "GigaChat3-10B-A1.8B": ("<s>", "</s>"),
    "Kimi-K3": KIMI,
    "LFM2-8B-A1B": LFM2,
    "LFM2.5-8B-A1B": LFM2,
    "LFM2.5-Instruct": LFM2,
    "MiniMax-M2": ("]~!b[", "[e~["),
    "NVIDIA-Nemotron-Nano-v2": ("<s>", "<SPECIAL_12>"),
    "StepFun3.5-Flash": QWEN,
    "deepseek-ai-DeepSeek-V3.2": DEEPSEEK,
    "gemma4": GEMMA,
    "google-gemma-4-31B-it": GEMMA,
    "google-gemma-4-31B-it-interleaved": GEMMA,
    "tool_chat_template_functiongemma": GEMMA,
    "tool_chat_template_toolace": LLAMA3,
    "tool_chat_template_xlam_llama": LLAMA3,
    "tool_chat_template_xlam_qwen": QWEN,
    "CohereForAI-c4ai-command-r-plus-tool_use": COHERE,
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": COHERE,
    "GLM-4.6": ("", "<|endoftext|>"),
    "Kimi-K2-Instruct": KIMI,
    "Kimi-K2-Thinking": KIMI,
    "moonshotai-Kimi-K2": KIMI,
    "Mistral-Small-3.2-24B-Instruct-2506": MISTRAL,
    "mistralai-Ministral-3-14B-Reasoning-2512": MISTRAL,
    "mistralai-Mistral-Nemo-Instruct-2407": MISTRAL,
    "tool_chat_template_mistral3": MISTRAL,
    "unsloth-mistral-Devstral-Small-2507": MISTRAL,
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": ("<|begin_of_text|>", "<|im_end|>"),
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": ("<|begin_of_text|>", "<|im_end|>"),
    "tool_chat_template_hermes": QWEN,
    "Qwen-QwQ-32B": QWEN,
    "Qwen-Qwen2.5-7B-Instruct": QWEN,
    "Qwen-Qwen3-0.6B": QWEN,
    "Qwen3-Coder": QWEN,
    "Qwen3.5-4B": QWEN,
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": DEEPSEEK,
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": DEEPSEEK,
    "deepseek-ai-DeepSeek-V3.1": DEEPSEEK,
    "llama-cpp-deepseek-r1": DEEPSEEK,
    "tool_chat_template_deepseekv3": DEEPSEEK,
    "fireworks-ai-llama-3-firefunction-v2": LLAMA3,
    "meetkai-functionary-medium-v3.1": LLAMA3,
    "meetkai-functionary-medium-v3.2": LLAMA3,
    "meta-llama-Llama-3.1-8B-Instruct": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct": LLAMA3,
    "meta-llama-Llama-3.3-70B-Instruct": LLAMA3,
    "tool_chat_template_llama3.2_pythonic": LLAMA3,
    "tool_chat_template_llama4_json": ("<|begin_of_text|>", "<|eot|>"),
    "tool_chat_template_llama4_pythonic": ("<|begin_of_text|>", "<|eot|>"),
    "gemma3-instruct.index": GEMMA,
    "google-gemma-2-2b-it": GEMMA,
    "tool_chat_template_gemma3_pythonic": GEMMA,
    "ibm-granite-granite-3.3-2B-Instruct": GRANITE,
    "ibm-granite-granite-4.0": GRANITE,
    "tool_chat_template_granite": GRANITE,
    "microsoft-Phi-3.5-mini-instruct": ("<s>", "<|endoftext|>"),
    "microsoft-Phi-4-mini-instruct": PHI4,
    "llama-cpp-microsoft-Phi-4-mini-instruct": PHI4,
    "tool_chat_template_phi4_mini": PHI4,
    "openai-gpt-oss-120b": ("<|startoftext|>", "<|return|>"),
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city's name."}},
            "required": ["city"],
        },
    },
}

# FireFunction v2 ignores `tools`: it takes the tool list as a JSON string `functions` and a `datetime`.
EXTRA_KWARGS: dict[str, dict[str, Any]] = {
    "fireworks-ai-llama-3-firefunction-v2": {
        "functions": json.dumps([WEATHER_TOOL["function"]]), "datetime": "2025-01-01"},
}

# Templates that raise on an OpenAI-shaped `content: None` next to tool_calls (message, as they word it).
# For these the round trip sends `content: ""`, which is what a gateway has to normalise to.
NULL_CONTENT_ERRORS = {
    "Qwen-QwQ-32B": "'None' has no attribute 'split'",
    "Qwen-Qwen3-0.6B": "argument of type 'NoneType' is not iterable",
    "ibm-granite-granite-3.3-2B-Instruct": 'can only concatenate str (not "NoneType") to str',
    "microsoft-Phi-3.5-mini-instruct": 'can only concatenate str (not "NoneType") to str',
    "microsoft-Phi-4-mini-instruct": 'can only concatenate str (not "NoneType") to str',
    "mistralai-Ministral-3-14B-Reasoning-2512": "object of type 'NoneType' has no len()",
    "openai-gpt-oss-120b": "argument of type 'NoneType' is not iterable",
    "gemma3-instruct.index": "Invalid content type",
    "tool_chat_template_gemma3_pythonic": "Invalid content type",
    "tool_chat_template_llama4_json": "'NoneType' object is not iterable",
    "tool_chat_template_llama4_pythonic": "'NoneType' object is not iterable",
    "unsloth-mistral-Devstral-Small-2507": "None has no element 0",
    "LFM2.5-8B-A1B": "'NoneType' object is not iterable",
}

# What a template legitimately cannot render, with its own message.
ALTERNATE = "Conversation roles must alternate user/assistant/user/assistant/..."
EXPECTED_ERRORS = {
    ("google-gemma-2-2b-it", "plain"): "System role not supported",
    ("google-gemma-2-2b-it", "round_trip"): ALTERNATE,  # no tool role, and it must alternate
    ("gemma3-instruct.index", "round_trip"): ALTERNATE,
}


def load(fixture: str, *, engine_variables: bool = False) -> ChatTemplate:
    """A fixture as transformers renders it; with `engine_variables`, as the gateway does (llama.cpp's
    extra variables: see gateway.core.template_variables)."""
    bos, eos = SPECIAL_TOKENS[fixture]
    return load_template_file(FIXTURES / f"{fixture}.jinja", bos_token=bos, eos_token=eos,
                              engine_variables=engine_variables)


def conversation(fixture: str, scenario: str, template: ChatTemplate) -> tuple[list[dict], dict[str, Any]]:
    """The messages and render kwargs of one scenario, shaped the way this template takes them."""
    kwargs: dict[str, Any] = dict(EXTRA_KWARGS.get(fixture, {}))
    if scenario == "plain":
        return [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}], kwargs
    user = {"role": "user", "content": "What is the weather in Paris?"}
    if scenario == "tools":
        return [user], {**kwargs, "tools": [WEATHER_TOOL]}
    if scenario == "history":  # a finished turn with reasoning, then a new question
        answer = {"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4."}
        return [user, answer, {"role": "user", "content": "And 3+3?"}], kwargs
    assert scenario == "round_trip"
    arguments: Any = {"city": "Paris"}
    if not template.caps.requires_object_arguments:
        arguments = json.dumps(arguments)  # templates that concatenate arguments need the JSON text
    call = {"id": "call12345", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}
    assistant = {"role": "assistant", "content": "" if fixture in NULL_CONTENT_ERRORS else None, "tool_calls": [call]}
    result = {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "18C and sunny"}
    return [user, assistant, result], {**kwargs, "tools": [WEATHER_TOOL]}


def test_every_fixture_has_special_tokens() -> None:
    assert len(ALL_FIXTURES) >= 40  # the folder is found
    assert sorted(SPECIAL_TOKENS) == ALL_FIXTURES


# --- 1. Every template renders what a gateway sends, or fails with its own message ---


@pytest.mark.parametrize("scenario", ["plain", "tools", "round_trip"])
@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_fixture_renders(fixture: str, scenario: str) -> None:
    template = load(fixture)
    messages, kwargs = conversation(fixture, scenario, template)
    expected_error = EXPECTED_ERRORS.get((fixture, scenario))
    if expected_error:
        with pytest.raises(TemplateError, match=re.escape(expected_error)):
            template.render(messages, add_generation_prompt=True, **kwargs)
        return
    out = template.render(messages, add_generation_prompt=True, **kwargs)
    if fixture in EXTRA_KWARGS:
        return  # its caps were probed without the kwargs it needs
    # The probed caps agree with what a real conversation shows.
    if scenario == "plain":
        assert "You are terse." in out
    if scenario == "tools":
        assert ("get_weather" in out) == template.caps.supports_tools
    if scenario == "round_trip":
        assert ("get_weather" in out) == (template.caps.supports_tool_calls or template.caps.supports_tools)
        assert ("18C and sunny" in out) == template.caps.supports_tool_role
    else:  # (after a tool result DeepSeek's templates write no generation prompt: the model goes on directly)
        assert out.endswith(template.caps.generation_prompt)


@pytest.mark.parametrize("fixture", sorted(NULL_CONTENT_ERRORS))
def test_templates_that_reject_null_content(fixture: str) -> None:
    template = load(fixture)
    messages, kwargs = conversation(fixture, "round_trip", template)
    messages[1] = {**messages[1], "content": None}
    with pytest.raises(TemplateError, match=re.escape(NULL_CONTENT_ERRORS[fixture])):
        template.render(messages, **kwargs)


def test_firefunction_needs_its_functions_kwarg() -> None:
    with pytest.raises(TemplateError, match="'functions' is undefined"):
        load("fireworks-ai-llama-3-firefunction-v2").render([{"role": "user", "content": "Hi"}], tools=[WEATHER_TOOL])


def test_null_content_reaches_the_template() -> None:
    # DeepSeek's templates render a tool call only when content is None, so None must not be dropped.
    template = load("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")
    messages, _ = conversation("deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "round_trip", template)
    assert "<｜tool▁sep｜>get_weather" in template.render(messages)


# --- 2. Byte-identical to transformers ---


def transformers_render(template_source: str, messages: list[dict], tools: list[dict] | None,
                        add_generation_prompt: bool, **kwargs: Any) -> str:
    rendered, _ = render_jinja_template(conversations=[messages], tools=tools, chat_template=template_source,
                                        add_generation_prompt=add_generation_prompt, **kwargs)
    return rendered[0]


def both_renders(fixture: str, messages: list[dict], kwargs: dict[str, Any],
                 add_generation_prompt: bool) -> tuple[str | Exception, str | Exception]:
    template, source = load(fixture), (FIXTURES / f"{fixture}.jinja").read_text(encoding="utf-8")
    bos, eos = SPECIAL_TOKENS[fixture]
    kwargs = dict(kwargs)
    tools = kwargs.pop("tools", None)

    def ours() -> str | Exception:
        try:
            return template.render(messages, tools=tools, add_generation_prompt=add_generation_prompt, **kwargs)
        except TemplateError as error:
            return error

    def theirs() -> str | Exception:
        try:
            # As apply_chat_template does: kwargs win over the special tokens.
            return transformers_render(source, messages, tools, add_generation_prompt,
                                       **{"bos_token": bos, "eos_token": eos, **kwargs})
        except Exception as error:
            return error

    result = ours(), theirs()
    if isinstance(result[0], str) and result[0] != result[1]:
        result = ours(), theirs()  # strftime_now may have crossed a second or a day between the two
    return result


# Where transformers fails and we render, on purpose (see gateway.core.chat_template): `tools` is left
# undefined rather than None when there are none, tojson accepts the generator `map()` gives, and a
# template may append to the lists it built (Kimi K2 queues call ids; transformers' sandbox refuses).
UNSAFE_APPEND = "access to attribute 'append' of 'list' object is unsafe"
TRANSFORMERS_ONLY_ERRORS = {
    ("Kimi-K2-Instruct", "round_trip"): UNSAFE_APPEND,
    ("Kimi-K2-Thinking", "round_trip"): UNSAFE_APPEND,
    ("tool_chat_template_functiongemma", "plain"): "object of type 'NoneType' has no len()",
    ("tool_chat_template_functiongemma", "history"): "object of type 'NoneType' has no len()",
    ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "plain"): "'NoneType' object is not iterable",
    ("NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "history"): "'NoneType' object is not iterable",
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "plain"): "'NoneType' object is not iterable",
    ("NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "history"): "'NoneType' object is not iterable",
    ("CohereForAI-c4ai-command-r-plus-tool_use", "plain"): "'NoneType' object is not iterable",
    ("CohereForAI-c4ai-command-r-plus-tool_use", "history"): "'NoneType' object is not iterable",
    ("llama-cpp-microsoft-Phi-4-mini-instruct", "plain"): "'NoneType' object is not iterable",
    ("llama-cpp-microsoft-Phi-4-mini-instruct", "history"): "'NoneType' object is not iterable",
    ("llama-cpp-deepseek-r1", "tools"): "Object of type generator is not JSON serializable",
    ("llama-cpp-deepseek-r1", "round_trip"): "Object of type generator is not JSON serializable",
}


# Where both render and the texts differ, because `tools` is undefined here and None in transformers.
XLAM_SYNTAX = (
    "You have access to a set of tools. When using tools, make calls in a single JSON array: \n\n"
    '[{"name": "tool_call_name", "arguments": {"arg1": "value1", "arg2": "value2"}}, ... (additional parallel '
    "tool calls as needed)]\n\nIf no tool is suitable, state that explicitly. If the user's input lacks required "
    "parameters, ask for clarification. Do not interpret or respond until tool results are returned. Once they are "
    "available, process them or make additional calls if needed. For tasks that don't require tools, such as casual "
    "conversation or general advice, respond directly in plain text. The available tools are:\n\n"
)
UNDEFINED_TOOLS_DIFFER = {("tool_chat_template_xlam_qwen", "history"): XLAM_SYNTAX}


@pytest.mark.parametrize("add_generation_prompt", [True, False])
@pytest.mark.parametrize("scenario", ["plain", "tools", "round_trip", "history"])
@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_identical_to_transformers(fixture: str, scenario: str, add_generation_prompt: bool) -> None:
    messages, kwargs = conversation(fixture, scenario, load(fixture))
    ours, theirs = both_renders(fixture, messages, kwargs, add_generation_prompt)
    if (fixture, scenario) in TRANSFORMERS_ONLY_ERRORS:
        assert isinstance(theirs, Exception) and TRANSFORMERS_ONLY_ERRORS[fixture, scenario] in str(theirs)
        assert isinstance(ours, str)
    elif isinstance(theirs, Exception):  # both fail, for the same reason
        assert isinstance(ours, TemplateError), f"transformers failed ({theirs!r}) but we rendered"
        assert str(ours).endswith(str(theirs))
    elif (fixture, scenario) in UNDEFINED_TOOLS_DIFFER:
        # `tools is not none` holds for undefined tools: the call syntax is explained, and only that.
        assert isinstance(ours, str) and ours != theirs
        assert ours.replace(UNDEFINED_TOOLS_DIFFER[fixture, scenario], "", 1) == theirs
    else:
        assert ours == theirs


@pytest.mark.parametrize("fixture, kwargs", [
    ("Qwen-Qwen3-0.6B", {"enable_thinking": False}),
    ("deepseek-ai-DeepSeek-V3.1", {"thinking": True}),
    ("openai-gpt-oss-120b", {"reasoning_effort": "high"}),
    ("meta-llama-Llama-3.1-8B-Instruct", {"date_string": "01 Jan 2025", "tools_in_user_message": False}),
    ("meta-llama-Llama-3.2-3B-Instruct", {"date_string": "01 Jan 2025"}),
    ("mistralai-Mistral-Nemo-Instruct-2407", {"bos_token": "<BOS>"}),  # extra kwargs win over special tokens
])
def test_extra_kwargs_identical_to_transformers(fixture: str, kwargs: dict[str, Any]) -> None:
    messages, scenario_kwargs = conversation(fixture, "tools", load(fixture))
    ours, theirs = both_renders(fixture, messages, {**scenario_kwargs, **kwargs}, True)
    assert isinstance(ours, str) and ours == theirs
    plain, _ = both_renders(fixture, messages, scenario_kwargs, True)
    assert plain != ours  # the kwarg reached the template


# --- 3. Caps ---

CAPS = {
    "Qwen-Qwen2.5-7B-Instruct": TemplateCaps(
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<|im_end|>",), generation_prompt="<|im_start|>assistant\n"),
    "Qwen-Qwen3-0.6B": TemplateCaps(  # accepts string and object arguments
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<|im_end|>",), generation_prompt="<|im_start|>assistant\n"),
    "Qwen3-Coder": TemplateCaps(  # iterates arguments|items into <parameter=...> blocks
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<|im_end|>",), generation_prompt="<|im_start|>assistant\n"),
    "meta-llama-Llama-3.1-8B-Instruct": TemplateCaps(
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<|eot_id|>",),
        generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "mistralai-Mistral-Nemo-Instruct-2407": TemplateCaps(  # `function|tojson` double-encodes a string
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("</s>",), generation_prompt=""),
    "google-gemma-2-2b-it": TemplateCaps(  # raises "System role not supported"; no tools at all
        supports_system_role=False, supports_tools=False, supports_tool_calls=False, supports_tool_role=False,
        requires_object_arguments=False, end_of_turn=("<end_of_turn>",), generation_prompt="<start_of_turn>model\n"),
    "gemma3-instruct.index": TemplateCaps(  # merges the system text into the first user turn
        supports_system_role=True, supports_tools=False, supports_tool_calls=False, supports_tool_role=False,
        requires_object_arguments=False, end_of_turn=("<end_of_turn>",), generation_prompt="<start_of_turn>model\n"),
    "microsoft-Phi-3.5-mini-instruct": TemplateCaps(  # writes eos after the last turn when not prompting
        supports_system_role=True, supports_tools=False, supports_tool_calls=False, supports_tool_role=False,
        requires_object_arguments=False, end_of_turn=("<|end|>", "<|endoftext|>"), generation_prompt="<|assistant|>\n"),
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": TemplateCaps(
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<|im_end|>",), generation_prompt="<|im_start|>assistant\n"),
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": TemplateCaps(  # concatenates arguments: must be a string
        supports_system_role=True, supports_tools=False, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<｜end▁of▁sentence｜>",),
        generation_prompt="<｜Assistant｜><think>\n"),
    "openai-gpt-oss-120b": TemplateCaps(  # the last assistant turn ends in <|return|>, earlier ones in <|end|>
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<|return|>",), generation_prompt="<|start|>assistant"),
    "ibm-granite-granite-4.0": TemplateCaps(
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<|end_of_text|>",),
        generation_prompt="<|start_of_role|>assistant<|end_of_role|>"),
    # Beyond the brief's list: the surprising ones.
    "ibm-granite-granite-3.3-2B-Instruct": TemplateCaps(  # tool_calls are not rendered at all
        supports_system_role=True, supports_tools=True, supports_tool_calls=False, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<|end_of_text|>",),
        generation_prompt="<|start_of_role|>assistant<|end_of_role|>"),
    "Kimi-K2-Instruct": TemplateCaps(  # writes a call's id, not its name; appends to its own list (allowed)
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<|im_end|>",),
        generation_prompt="<|im_assistant|>assistant<|im_middle|>"),
    "llama-cpp-deepseek-r1": TemplateCaps(  # llama.cpp's rewrite describes tools and applies tojson
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<｜end▁of▁sentence｜>",),
        generation_prompt="<｜Assistant｜><think>\n"),
    "llama-cpp-microsoft-Phi-4-mini-instruct": TemplateCaps(
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<|end|>", "<|endoftext|>"), generation_prompt="<|assistant|>"),
    "tool_chat_template_phi4_mini": TemplateCaps(  # prints arguments as-is: a dict would come out as Python repr
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=False, end_of_turn=("<|end|>",), generation_prompt=""),
    "CohereForAI-c4ai-command-r-plus-tool_use": TemplateCaps(  # writes a whole system turn after the answer
        supports_system_role=True, supports_tools=True, supports_tool_calls=True, supports_tool_role=True,
        requires_object_arguments=True, end_of_turn=("<|END_OF_TURN_TOKEN|>",),
        generation_prompt="<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>"),
    "fireworks-ai-llama-3-firefunction-v2": TemplateCaps(  # nothing renders without its `functions` kwarg
        supports_system_role=False, supports_tools=False, supports_tool_calls=False, supports_tool_role=False,
        requires_object_arguments=False, end_of_turn=(), generation_prompt=""),
}


@pytest.mark.parametrize("fixture", sorted(CAPS))
def test_caps(fixture: str) -> None:
    assert load(fixture).caps == CAPS[fixture]


@pytest.mark.parametrize("fixture", ALL_FIXTURES)
def test_caps_probe_every_fixture(fixture: str) -> None:
    caps = load(fixture).caps
    assert caps.requires_object_arguments <= caps.supports_tool_calls
    if fixture not in ("google-gemma-2-2b-it", "fireworks-ai-llama-3-firefunction-v2"):
        assert caps.supports_system_role


def test_caps_of_a_template_that_always_fails() -> None:
    caps = ChatTemplate("{{ raise_exception('no') }}").caps
    assert caps == TemplateCaps(False, False, False, False, False, (), "")


# --- 4. Errors and the sandbox ---


def test_raise_exception_gives_template_error_with_its_message() -> None:
    template = ChatTemplate("{{ raise_exception('Only ' + messages[0].role + ' here') }}")
    with pytest.raises(TemplateError) as caught:
        template.render([{"role": "user", "content": "Hi"}])
    assert str(caught.value) == "Only user here"


def test_syntax_error_at_construction() -> None:
    with pytest.raises(TemplateError, match="broken: syntax error at line 2"):
        ChatTemplate("ok\n{% if %}", name="broken")


def test_other_render_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="TypeError"):
        ChatTemplate("{{ 'a' + messages }}").render([])


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{{ messages.__class__.__base__.__subclasses__() }}",
    "{{ raise_exception.__globals__['os'] }}",
    "{% set ns = namespace(_secret=1) %}",
    "{% set ns = namespace() %}{% set ns._x = 1 %}",
    "{{ messages.append(1) }}",  # immutable: templates cannot change the caller's data
])
def test_sandbox_blocks_python_internals(source: str) -> None:
    with pytest.raises(TemplateError):
        ChatTemplate(source).render([{"role": "user", "content": "Hi"}])


def test_unsafe_attribute_renders_as_nothing() -> None:
    assert ChatTemplate("[{{ ''.__class__ }}]").render([]) == "[]"


# --- The Jinja environment, like transformers' ---


def test_environment_features() -> None:
    source = (
        "{% for m in messages %}\n"  # trim_blocks drops the newline after a block tag
        "    {% if loop.index > 1 %}{% break %}{% endif %}"  # lstrip_blocks, loopcontrols
        "{% generation %}{{ m.content }}{% endgeneration %}\n"
        "{% endfor %}"
        "{{ {'b': '<é>', 'a': 1} | tojson(indent=1, sort_keys=true) }}|"
        "{{ [1, 2] | tojson(separators=(',', ':')) }}|{{ dict(x=1).x }}|{{ strftime_now('%Y') | length }}"
    )
    out = ChatTemplate(source).render([{"role": "user", "content": "one"}, {"role": "user", "content": "two"}])
    assert out == 'one{\n "a": 1,\n "b": "<é>"\n}|[1,2]|1|4'


def test_what_reaches_the_template() -> None:
    source = ("{{ bos_token }}|{{ eos_token }}|{{ tools is defined }}|{{ add_generation_prompt }}|"
              "{{ messages[0].content is none }}|{{ messages[0].thinking }}|{{ enable_thinking }}")
    template = ChatTemplate(source, bos_token="<s>", eos_token="</s>")
    message = {"role": "assistant", "content": None, "reasoning_content": "hmm"}
    assert template.render([message], enable_thinking=False) == "<s>|</s>|False|True|True|hmm|False"
    assert template.render([message], tools=[], add_generation_prompt=False, bos_token="B").startswith(
        "B|</s>|True|False|")
    assert message == {"role": "assistant", "content": None, "reasoning_content": "hmm"}  # caller's dict untouched


def test_load_template_file_names_it_after_the_file() -> None:
    template = load_template_file(FIXTURES / "Qwen-Qwen2.5-7B-Instruct.jinja", eos_token="<|im_end|>")
    assert (template.name, template.bos_token, template.eos_token) == ("Qwen-Qwen2.5-7B-Instruct", "", "<|im_end|>")


# --- 5. The sandbox ---


def test_a_template_may_change_the_lists_and_dicts_it_built() -> None:
    source = ("{% set ns = namespace(ids=[]) %}{% set _ = ns.ids.append(messages[0].content) %}"
              "{% set seen = {} %}{% set _ = seen.update({'n': ns.ids | length}) %}"
              "{% set copy = messages[:] %}{% set _ = copy.pop() %}"
              "{{ ns.ids.pop(0) }}|{{ ns.ids }}|{{ seen.n }}|{{ copy | length }}")
    assert ChatTemplate(source).render([{"role": "user", "content": "hi"}]) == "hi|[]|1|0"


@pytest.mark.parametrize("statement", [
    "{% set _ = messages.append({'role': 'user'}) %}",
    "{% set _ = messages[0].update({'content': 'changed'}) %}",
    "{% set _ = messages[0].pop('content') %}",
    "{% set _ = tools.clear() %}",
    "{% set _ = tools[0]['function'].setdefault('name', 'x') %}",
    "{% set _ = documents.append(1) %}",
    "{% set given = messages %}{% set _ = given.append(1) %}",
])
def test_what_a_template_is_given_stays_read_only(statement: str) -> None:
    message = {"role": "user", "content": "hi"}
    tools = [{"type": "function", "function": {"name": "f"}}]
    with pytest.raises(TemplateError, match="SecurityError: access to attribute .* is unsafe"):
        ChatTemplate(statement).render([message], tools=tools, documents=[])
    assert message == {"role": "user", "content": "hi"} and tools == [{"type": "function", "function": {"name": "f"}}]


def test_the_sandbox_still_guards_python_internals() -> None:
    with pytest.raises(TemplateError, match="SecurityError"):
        ChatTemplate("{{ [].append.__self__.__class__.__subclasses__() }}").render([])
    assert ChatTemplate("{{ [].__class__ }}|{{ messages.__class__ }}").render([]) == "|"


def test_kimi_k2_renders_its_call_id_queue() -> None:
    template = load("Kimi-K2-Instruct")
    call = {"id": "functions.get_weather:0", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    messages = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": "", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "functions.get_weather:0", "content": "18C"}]
    out = template.render(messages, tools=[WEATHER_TOOL])
    assert '<|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{"city": "Paris"}<|tool_call_end|>' in out
    assert "## Return of functions.get_weather:0\n18C" in out


# --- 6. What inference engines add beyond transformers' variables (gateway.core.template_variables) ---


def test_firefunction_renders_with_the_engine_variables() -> None:
    template = load("fireworks-ai-llama-3-firefunction-v2", engine_variables=True)
    out = template.render([{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    # llama.cpp's values: the tool list indented by 2, and today's time.
    assert "Available functions as JSON spec:\n" + json.dumps([WEATHER_TOOL], indent=2) in out
    today = re.search(r"Today is ([A-Z][a-z]{2} \d\d \d{4} \d\d:\d\d:\d\d GMT)\.", out)
    assert today is not None
    caps = template.caps
    assert caps.supports_tools and caps.supports_tool_calls and caps.supports_system_role


def test_llama3_gets_todays_date_and_tools_in_the_system_turn() -> None:
    template = load("meta-llama-Llama-3.1-8B-Instruct", engine_variables=True)
    out = template.render([{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER_TOOL])
    system, user = out.split("<|start_header_id|>user<|end_header_id|>")
    date = re.search(r"Today Date: (\d\d [A-Z][a-z]{2} \d{4})", system)
    assert date is not None and date.group(1) != "26 Jul 2024"  # not the template's own fixed fallback
    assert "get_weather" in system and "get_weather" not in user
    mine = template.render([{"role": "user", "content": "Hi"}], date_string="01 Jan 2025", tools_in_user_message=True)
    assert "Today Date: 01 Jan 2025" in mine, "a caller's own value wins"


@pytest.mark.parametrize("fixture", ["Qwen-Qwen2.5-7B-Instruct", "google-gemma-4-31B-it", "openai-gpt-oss-120b"])
def test_templates_that_read_none_of_them_render_as_transformers_does(fixture: str) -> None:
    messages, kwargs = conversation(fixture, "round_trip", load(fixture))
    tools = kwargs.pop("tools")
    assert load(fixture, engine_variables=True).render(messages, tools=tools) == load(fixture).render(messages, tools=tools)


def test_raise_exception_is_a_rejection_other_failures_are_not() -> None:
    with pytest.raises(TemplateRejected):
        ChatTemplate("{{ raise_exception('no') }}").render([])
    with pytest.raises(TemplateError) as caught:
        ChatTemplate("{{ 'a' + messages }}").render([])
    assert not isinstance(caught.value, TemplateRejected)


def test_a_template_file_is_known_by_its_path() -> None:
    path = FIXTURES / "Qwen-Qwen2.5-7B-Instruct.jinja"
    assert load_template_file(path).origin == str(path)
    assert ChatTemplate("x", name="from the backend").origin == "from the backend"
