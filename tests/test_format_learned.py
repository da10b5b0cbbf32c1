"""Formats learned from a template's own renders, and `tool_format: auto` over every fixture.

(a) `auto` names a format for every fixture template: by its markers, else learned, else `default`;
(b) for every family with a named format, the format learned from its template parses the family's
    outputs (every corpus of the named format's tests) as the named one does; where it cannot, the
    reason is stated here, case by case;
(c) a family no named format knows (GigaChat 3) works through the gateway with a learned format,
    stream and non-stream, and `toolwire check` prints what was learned.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import yaml
from openai import AsyncOpenAI

from adapters.formats import get_format
from adapters.formats.auto import choose_format
from adapters.formats.base import ToolFormat
from adapters.formats.events import ReasoningDelta
from adapters.formats.learned import LearnedFormat, learn_format
from gateway.core.chat_template import ChatTemplate, load_template_file
from tests import (
    test_format_families,
    test_format_json,
    test_format_name_args,
    test_format_xml_pythonic,
)
from tests.fakes.llamacpp import FakeLlamaServer, Scripted, split_text
from tests.support.gateway import TEMPLATES, make_config, running_gateway
from tests.support.real_llama import free_port
from tests.test_chat_template import SPECIAL_TOKENS
from tests.test_chat_tools import ask, ask_streamed, summary
from tests.test_format_xml_pythonic import TOOLS
from tests.test_stream_parser import HERMES, REASONING_CASES, Outcome, collect


def template(fixture: str) -> ChatTemplate:
    bos, eos = SPECIAL_TOKENS[fixture]
    return load_template_file(TEMPLATES / f"{fixture}.jinja", bos_token=bos, eos_token=eos)


def learned(fixture: str) -> ToolFormat | None:
    loaded = template(fixture)
    return learn_format(loaded.render_probe, loaded.caps.generation_prompt).format


# -- (a) auto over the whole folder ---------------------------------------------------------------

# What `auto` picks beyond the markers test_format_json checks: learned where no named format fits.
LEARNED_BY_AUTO = {"GigaChat3-10B-A1.8B", "Kimi-K3"}
STILL_DEFAULT = {  # no tool-call syntax in the template at all
    "gemma3-instruct.index", "google-gemma-2-2b-it", "microsoft-Phi-3.5-mini-instruct", "microsoft-Phi-4-mini-instruct",
}  # fmt: skip


@pytest.mark.parametrize("fixture", sorted(SPECIAL_TOKENS))
def test_auto_names_a_format_for_every_fixture(fixture: str) -> None:
    loaded = template(fixture)
    choice = choose_format(loaded.source, loaded.render_probe, loaded.caps.generation_prompt)
    expected = test_format_json.EXPECTED_FORMATS[f"{fixture}.jinja"]
    if fixture in LEARNED_BY_AUTO:
        assert isinstance(choice.format, LearnedFormat), choice.reason
        assert choice.reason.startswith("learned from the template's renders")
    elif fixture in STILL_DEFAULT:
        assert choice.format.name == "default" and "nothing learned" in choice.reason
    else:
        assert expected != "default", f"{fixture}: a template with tool syntax must be named or learned"
        assert choice.format.name == expected


# -- (b) learned vs named ---------------------------------------------------------------------------


def _corpus() -> dict[str, list[tuple[str, str, str]]]:
    """Every output in the named formats' tests: format -> [(case, output, prompt)]."""
    corpus: dict[str, list[tuple[str, str, str]]] = {}

    def add(format_name: str, case: str, text: str, prompt: str = "") -> None:
        corpus.setdefault(format_name, []).append((case, text, prompt))

    for param in test_format_families.CORPUS:
        format_name, text, prompt, _ = param.values  # type: ignore[attr-defined]
        add(format_name, param.id.split("-", 1)[1], text, prompt)  # type: ignore[attr-defined]
    for format_name, case, text, prompt, _, _ in test_format_name_args.CORPUS:
        add(format_name, case, text, prompt)
    for case, text, _ in test_format_xml_pythonic.XML:
        add("qwen3_coder", case, text)
    for case, text, prompt, _ in test_format_xml_pythonic.REASONING:
        add("qwen3_coder", case, text, prompt)
    for case, text, _ in test_format_xml_pythonic.PYTHONIC:
        add("pythonic", case, text)
    for format_name, cases in test_format_json.CORPUS.items():
        for number, (text, _) in enumerate(cases):
            add(format_name, f"#{number}", text)
    for case, text, _ in HERMES:
        add("hermes", case, text)
    for case, text, prompt, _ in REASONING_CASES:
        add("hermes", case, text, prompt)
    return corpus


CORPUS = _corpus()

# Outputs the learned format reads differently, and why: each is a form the family's named format
# accepts although this template never writes it (another version of the family, a habit of the
# models, reasoning the template does not show).
NO_REASONING_SHOWN = {"think then call; a call drafted inside the thinking is not a call", "forced-open think from the prompt"}
QWEN35_ONLY = {"Qwen3.5 thinks, then calls", "a call drafted inside the thinking is not a call", "Qwen3-Coder writes no thinking"}
V11_ONLY = {"v11 single call", "v11 parallel calls", "v11 text before and after", "v11 call id copied from history",
            "unicode, escapes, raw newline", "a tool not on offer is still a call", "reasoning, and a call drafted in it is not a call",
            "malformed arguments", "truncated arguments", "valid call after a malformed list"}  # fmt: skip
V3_LIST_ONLY = {"v3 list", "v7 list after a space", "v3 arguments as a JSON string", "reasoning, and a call drafted in it is not a call"}
V31_ONLY = {"v3.1 calls", "v3.1 name starting like the type"}
LLAMA4_ONLY = {"#2", "#3"}  # `<|python_tag|>` (builtin tools only) and Llama 4's "; " between calls
PYTHON_TAGS = {"Llama 4's python tags", "Llama 4's python tags without brackets"}
DIFFERENCES: dict[str, set[str]] = {
    "ByteDance-Seed-OSS": {"values padded with newlines as Qwen3-Coder writes them"},
    "CohereForAI-c4ai-command-r-plus-tool_use": {"an action list"},  # "Action: ```json" on one line; the template breaks it
    "CohereForAI-c4ai-command-r7b-12-2024-tool_use": {"#1"},  # <|START_RESPONSE|> is not shown around history answers' calls
    "Kimi-K2-Instruct": {"reasoning (K2-Thinking)"},
    "moonshotai-Kimi-K2": {"reasoning (K2-Thinking)"},
    "Mistral-Small-3.2-24B-Instruct-2506": V3_LIST_ONLY,
    "mistralai-Ministral-3-14B-Reasoning-2512": V3_LIST_ONLY,  # [THINK] comes as content parts, not reasoning_content
    "unsloth-mistral-Devstral-Small-2507": V3_LIST_ONLY,
    "mistralai-Mistral-Nemo-Instruct-2407": V11_ONLY,
    "tool_chat_template_mistral3": V11_ONLY,
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use": NO_REASONING_SHOWN,
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use": NO_REASONING_SHOWN,
    "Qwen-Qwen2.5-7B-Instruct": NO_REASONING_SHOWN,
    "ibm-granite-granite-4.0": NO_REASONING_SHOWN,
    "tool_chat_template_hermes": NO_REASONING_SHOWN,
    "Qwen3-Coder": QWEN35_ONLY,
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": V31_ONLY,
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B": V31_ONLY,
    "llama-cpp-deepseek-r1": V31_ONLY,
    "tool_chat_template_deepseekv3": V31_ONLY | {"R1: forced-open thinking, then a call", "R1: a call drafted in thinking is not a call"},
    "gemma4": {"reasoning, a drafted call in it is not a call"},  # the first Gemma 4 template shows no reasoning
    "llama-cpp-microsoft-Phi-4-mini-instruct": {"#1"},  # FireFunction's `functools[...]`
    # Learned since the template gets llama.cpp's `functions` and `datetime` (gateway.core.template_variables).
    "fireworks-ai-llama-3-firefunction-v2": {"#0"},  # Phi-4-mini's `<|tool_call|>...<|/tool_call|>`
    "meta-llama-Llama-3.1-8B-Instruct": LLAMA4_ONLY,
    "meta-llama-Llama-3.2-3B-Instruct": LLAMA4_ONLY,
    "meta-llama-Llama-3.3-70B-Instruct": LLAMA4_ONLY,
    "tool_chat_template_llama4_json": LLAMA4_ONLY,
    "tool_chat_template_gemma3_pythonic": PYTHON_TAGS,
    "tool_chat_template_llama3.2_pythonic": PYTHON_TAGS,
    "tool_chat_template_llama4_pythonic": PYTHON_TAGS,
    "tool_chat_template_toolace": PYTHON_TAGS,
}
# Templates from which no format can be learned, or a format too far from the family's.
UNLEARNABLE = {
    "LFM2-8B-A1B": "writes no call",  # the template draws no past calls
    "LFM2.5-Instruct": "writes no call",
    "ibm-granite-granite-3.3-2B-Instruct": "writes no call",
    "meetkai-functionary-medium-v3.2": "nothing marks where a call begins",  # `>>>` ends the generation prompt
}
TOO_FAR = {
    # Apriel's reasoning opens with plain text ("Here are my reasoning steps:"), which no render shows.
    "Apriel-1.6-15b-Thinker-fixed",
    # harmony: channels, recipients and headers around the call; one call per turn in history.
    "openai-gpt-oss-120b",
    # V3.1's template writes V3.1 calls: every V3 (fenced) output in the corpus reads differently.
    "deepseek-ai-DeepSeek-V3.1",
    # vLLM's template writes history calls as bare `{...},{...}`, though it teaches `functools[...]`.
    "tool_chat_template_phi4_mini",
}
NAMED = {fixture: test_format_json.EXPECTED_FORMATS[f"{fixture}.jinja"] for fixture in SPECIAL_TOKENS}
COMPARED = sorted(f for f, name in NAMED.items() if name != "default" and f not in UNLEARNABLE and f not in TOO_FAR)


def outcome(tool_format: ToolFormat, text: str, prompt: str) -> tuple[str, Outcome]:
    parser = tool_format.new_parser(prompt, tools=TOOLS)
    events = parser.feed(text) + parser.close()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    return reasoning, collect([e for e in events if not isinstance(e, ReasoningDelta)])


@pytest.mark.parametrize("fixture", COMPARED)
def test_learned_format_reads_the_family_like_the_named_one(fixture: str) -> None:
    learned_format = learned(fixture)
    assert learned_format is not None
    named = get_format(NAMED[fixture])
    differing = {case for case, text, prompt in CORPUS[named.name] if outcome(named, text, prompt) != outcome(learned_format, text, prompt)}
    assert differing == DIFFERENCES.get(fixture, set())
    assert len(CORPUS[named.name]) > len(differing), "the family's own outputs agree"


@pytest.mark.parametrize("fixture", sorted(UNLEARNABLE))
def test_what_cannot_be_learned_says_why(fixture: str) -> None:
    loaded = template(fixture)
    learning = learn_format(loaded.render_probe, loaded.caps.generation_prompt)
    assert learning.format is None and UNLEARNABLE[fixture] in learning.summary


@pytest.mark.parametrize("fixture", sorted(TOO_FAR))
def test_learned_formats_too_far_from_the_family_still_read_what_the_template_writes(fixture: str) -> None:
    # What the template itself writes for a call, the learned format reads back as that call.
    learned_format = learned(fixture)
    assert learned_format is not None
    call = {"gpt_oss": ' to=functions.get_time<|channel|>commentary json<|message|>{}<|call|>',
            "deepseek": "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>get_time<｜tool▁sep｜>{}<｜tool▁call▁end｜><｜tool▁calls▁end｜>",
            "phi4_mini": '{"name": "get_time", "arguments": {}}',
            "apriel": '<tool_calls>[{"name": "get_time", "arguments": {}}]</tool_calls>'}[NAMED[fixture]]  # fmt: skip
    assert outcome(learned_format, call, "")[1] == Outcome("", [("get_time", {})])


# -- (c) a family with no named format ----------------------------------------------------------

GIGACHAT_CALL = 'function call<|role_sep|>\n{"name": "get_weather", "arguments": {"city": "Paris"}}'
K3_CALL = ('<|open|>tools<|sep|><|open|>call tool="get_weather" index="1"<|sep|><|open|>argument key="city" type="string"<|sep|>'
           'Paris<|close|>argument<|sep|><|open|>argument key="days" type="number"<|sep|>3<|close|>argument<|sep|>'
           '<|close|>call<|sep|><|close|>tools<|sep|>')  # fmt: skip


@pytest.mark.parametrize(("fixture", "output", "expected"), [
    ("GigaChat3-10B-A1.8B", "Let me check.<|message_sep|>\n\n" + GIGACHAT_CALL,
     Outcome("Let me check.<|message_sep|>", [("get_weather", {"city": "Paris"})])),
    ("Kimi-K3", K3_CALL, Outcome("<|sep|>", [("get_weather", {"city": "Paris", "days": 3})])),
])  # fmt: skip
def test_learned_formats_of_new_families(fixture: str, output: str, expected: Outcome) -> None:
    learned_format = learned(fixture)
    assert learned_format is not None
    for cut in range(len(output) + 1):
        assert outcome_split(learned_format, output, cut) == expected, f"split at {cut}"


def outcome_split(tool_format: ToolFormat, text: str, cut: int) -> Outcome:
    parser = tool_format.new_parser(tools=TOOLS)
    return collect(parser.feed(text[:cut]) + parser.feed(text[cut:]) + parser.close())


async def test_gateway_with_a_learned_format(fake_llama: FakeLlamaServer) -> None:
    backends = [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}]
    models = [{"name": "gigachat", "backend": "fake", "tool_format": "auto", "bos_token": "<s>", "eos_token": "</s>",
               "chat_template": str(TEMPLATES / "GigaChat3-10B-A1.8B.jinja")}]  # fmt: skip
    tools = [tool.as_openai() for tool in TOOLS]
    async with (
        running_gateway(make_config(backends, models)) as url,
        AsyncOpenAI(base_url=url, api_key="x", max_retries=0) as client,
    ):
        for text, expected, finish in ((GIGACHAT_CALL, (None, [("get_weather", {"city": "Paris"})]), "tool_calls"),
                                       ("It is sunny.", ("It is sunny.", []), "stop")):  # fmt: skip
            pieces = split_text(text, special=("<|role_sep|>",))
            fake_llama.script(Scripted(pieces), Scripted(pieces))
            whole = await ask(client, model="gigachat", tools=tools)
            _, streamed = await ask_streamed(client, model="gigachat", tools=tools)
            for reply in (whole, streamed):
                assert summary(reply.choices[0].message) == expected
                assert reply.choices[0].finish_reason == finish
    assert "function descriptions<|role_sep|>" in fake_llama.requests[-1]["prompt"], "the template lists the tools"


async def test_check_prints_what_was_learned(tmp_path: Path, fake_llama: FakeLlamaServer) -> None:
    config = tmp_path / "t.yaml"
    config.write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "backends": [{"name": "fake", "type": "llamacpp", "url": fake_llama.url}],
        "models": [{"name": "gigachat", "backend": "fake", "tool_format": "auto",
                    "chat_template": str(TEMPLATES / "GigaChat3-10B-A1.8B.jinja")}],
    }))  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "check", "--config", str(config), stdout=asyncio.subprocess.PIPE
    )
    output = (await process.communicate())[0].decode()
    assert process.returncode == 0, output
    assert "learned" in output
    assert "gigachat: tool format learned from its template: calls per turn one" in output
    assert "'function call<|role_sep|>'" in output



def test_a_learned_format_asks_the_backend_to_print_its_tokens() -> None:
    glm = learned("GLM-4.6")
    assert glm is not None
    assert {"<tool_call>", "</tool_call>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>"} <= set(glm.preserved_tokens)
    gemma = learned("google-gemma-4-31B-it")
    assert gemma is not None and '<|"|>' in gemma.preserved_tokens
