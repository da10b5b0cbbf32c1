"""`tool_format: auto`: pick the format a chat template teaches, from its markers and structure.

The template is what the model was trained with, so the syntax it writes into the prompt is the
syntax the model will answer in. Rules are tried in order; the first that matches wins, so the
more specific markers come before the ones they contain (Granite 4's `<tool_call>` is Hermes;
GLM's `<tool_call>` with `<arg_key>` is not).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Detection:
    format: str
    reason: str


# (format, markers that must all appear, why). A template that matches none of them may still
# teach a syntax toolwire can learn from its own renders (see `learned.py`).
_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("mistral", ("[TOOL_CALLS]",), "writes calls after [TOOL_CALLS] (Mistral)"),
    ("deepseek_v32", ("｜DSML｜",), "writes DSML <｜DSML｜invoke> calls (DeepSeek V3.2)"),
    ("deepseek", ("tool▁call▁begin",), "writes calls between <｜tool▁call▁begin｜> tokens (DeepSeek)"),
    ("gpt_oss", ("<|channel|>", "<|call|>"), "ends calls with <|call|> on a commentary channel (gpt-oss harmony)"),
    ("kimi_k2", ("<|tool_calls_section_begin|>",), "writes calls in a <|tool_calls_section_begin|> section (Kimi K2)"),
    ("glm45", ("<arg_key>",), "writes <tool_call>NAME with <arg_key>/<arg_value> pairs (GLM-4.5/4.6/4.7)"),
    ("minimax_m2", ("<minimax:tool_call>",), "writes <invoke> calls in <minimax:tool_call> (MiniMax-M2)"),
    ("seed_oss", ("<seed:tool_call>",), "writes <function=NAME> calls in <seed:tool_call> (Seed-OSS)"),
    ("qwen3_coder", ("<function=", "<parameter="), "writes <function=NAME><parameter=P> XML calls (Qwen3-Coder)"),
    ("gemma4", ("<|tool_call>call:",), "writes <|tool_call>call:NAME{...} literals (Gemma 4)"),
    ("functiongemma", ("<start_function_call>",), "writes <start_function_call>call:NAME{...} (FunctionGemma)"),
    ("command_r7b", ("<|START_ACTION|>",), "writes calls between <|START_ACTION|> and <|END_ACTION|> (Command R7B)"),
    ("phi4_mini", ("functools",), "writes calls as functools[...] (Phi-4-mini, FireFunction)"),
    ("phi4_mini", ("<|tool_call|>", "<|/tool_call|>"), "writes calls between <|tool_call|> and <|/tool_call|> (Phi-4-mini)"),
    ("granite", ("<|tool_call|>",), "writes calls as <|tool_call|>[...] (Granite 3)"),
    ("lfm2", ("<|tool_call_start|>",), "writes pythonic calls between <|tool_call_start|> and <|tool_call_end|> (LFM2)"),
    ("lfm2", ("List of tools: ",), "lists tools as `List of tools: [...]` (LFM2)"),
    ("nemotron", ("<TOOLCALL>",), "writes JSON call lists between <TOOLCALL> and </TOOLCALL> (Nemotron Nano v2)"),
    ("apriel", ("<tool_calls>", "[BEGIN FINAL RESPONSE]"), "writes JSON call lists in <tool_calls> (Apriel)"),
    ("xlam", ("xLAM",), "answers with a bare JSON list of calls (xLAM)"),
    ("functionary_v3_2", (">>>", "namespace"), "writes >>>NAME blocks (Functionary v3.2)"),
    ("functionary_v3_1", ("<function=",), "writes <function=NAME>{...}</function> calls (Functionary v3.1)"),
    ("hermes", ("<tool_call>",), "writes calls between <tool_call> and </tool_call> (Hermes / Qwen)"),
    ("pythonic", ("<|python_start|>",), "writes pythonic calls in <|python_start|> (Llama 4)"),
    ("pythonic", ("func_name1(",), "teaches [func_name(param=value)] pythonic calls"),
    ("llama3_json", ("<|python_tag|>",), 'writes {"name", "parameters"} JSON, optionally after <|python_tag|> (Llama 3.x)'),
    ("llama3_json", ('"parameters": ', "ipython"), 'writes {"name", "parameters"} JSON with ipython results (Llama 3.x)'),
    ("llama3_json", ("<|header_start|>", "parameters"), 'writes {"name", "parameters"} JSON (Llama 4)'),
    ("command_r_plus", ("Action:", "tool_name"), "writes Action: ```json [...]``` lists (Command R+)"),
)


def detect_format(template_source: str) -> Detection:
    """The tool format a template teaches, and why; `default` when it teaches none."""
    for format_name, markers, reason in _RULES:
        if all(marker in template_source for marker in markers):
            return Detection(format_name, reason)
    if "tools" in template_source:
        return Detection("default", "the template mentions tools but teaches no call syntax toolwire knows")
    return Detection("default", "the template teaches no tool-call syntax")
