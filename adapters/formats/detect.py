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


# (format, markers that must all appear, why). "default" entries name families whose syntax toolwire
# does not parse: their models are better served by the taught-by-prompt default format.
_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("mistral", ("[TOOL_CALLS]",), "writes calls after [TOOL_CALLS] (Mistral)"),
    ("deepseek", ("tool▁call▁begin",), "writes calls between <｜tool▁call▁begin｜> tokens (DeepSeek)"),
    ("gpt_oss", ("<|channel|>", "<|call|>"), "ends calls with <|call|> on a commentary channel (gpt-oss harmony)"),
    ("default", ("<|tool_calls_section_begin|>",), "Kimi K2 sections are not supported: falling back to default"),
    ("default", ("<arg_key>",), "GLM's <arg_key> calls are not supported: falling back to default"),
    ("qwen3_coder", ("<function=", "<parameter="), "writes <function=NAME><parameter=P> XML calls (Qwen3-Coder)"),
    ("command_r7b", ("<|START_ACTION|>",), "writes calls between <|START_ACTION|> and <|END_ACTION|> (Command R7B)"),
    ("phi4_mini", ("functools",), "writes calls as functools[...] (Phi-4-mini, FireFunction)"),
    ("phi4_mini", ("<|tool_call|>", "<|/tool_call|>"), "writes calls between <|tool_call|> and <|/tool_call|> (Phi-4-mini)"),
    ("granite", ("<|tool_call|>",), "writes calls as <|tool_call|>[...] (Granite 3)"),
    ("functionary_v3_2", (">>>", "namespace"), "writes >>>NAME blocks (Functionary v3.2)"),
    ("default", ("<function=",), "Functionary v3.1's <function=NAME> calls are not supported: falling back to default"),
    ("hermes", ("<tool_call>",), "writes calls between <tool_call> and </tool_call> (Hermes / Qwen)"),
    ("pythonic", ("<|python_start|>",), "writes pythonic calls in <|python_start|> (Llama 4)"),
    ("pythonic", ("func_name1(",), "teaches [func_name(param=value)] pythonic calls"),
    ("llama3_json", ("<|python_tag|>",), 'writes {"name", "parameters"} JSON, optionally after <|python_tag|> (Llama 3.x)'),
    ("llama3_json", ('"parameters": ', "ipython"), 'writes {"name", "parameters"} JSON with ipython results (Llama 3.x)'),
    ("llama3_json", ("<|header_start|>", "parameters"), 'writes {"name", "parameters"} JSON (Llama 4)'),
    ("default", ("Action:", "tool_name"), "Command R+'s Action: blocks are not supported: falling back to default"),
)


def detect_format(template_source: str) -> Detection:
    """The tool format a template teaches, and why; `default` when it teaches none."""
    for format_name, markers, reason in _RULES:
        if all(marker in template_source for marker in markers):
            return Detection(format_name, reason)
    if "tools" in template_source:
        return Detection("default", "the template mentions tools but teaches no call syntax toolwire knows")
    return Detection("default", "the template teaches no tool-call syntax")
