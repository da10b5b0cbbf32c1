"""`tool_format: auto`: pick the format a chat template teaches, from its markers and structure.

The template is what the model was trained with, so the syntax it writes into the prompt is the
syntax the model will answer in. Rules are tried in order; the first that matches wins, so the
more specific markers come before the ones they contain (Granite 4's `<tool_call>` is Hermes;
GLM's `<tool_call>` with `<arg_key>` is not).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import deepseek, deepseek_v32, glm45, kimi_k2, minimax_m2, qwen3_coder, seed_oss
from .functionary import FunctionaryV31Format, FunctionaryV32Format
from .gemma4 import GEMMA4_LITERAL, FunctionGemmaFormat, Gemma4Format
from .gpt_oss import GptOssFormat
from .hermes import HermesFormat
from .json_lists import (
    AprielFormat,
    CommandR7bFormat,
    CommandRPlusFormat,
    GraniteFormat,
    NemotronFormat,
    Phi4MiniFormat,
)
from .llama3 import Llama3JsonFormat
from .mistral import MistralFormat
from .pythonic import Lfm2Format, PythonicFormat


@dataclass(frozen=True, slots=True)
class Detection:
    format: str
    reason: str


def _bare(token: str) -> str:
    """A special token's inner words (`tool▁call▁begin` of `<｜tool▁call▁begin｜>`): how templates
    that build the token from parts still show it."""
    return token.strip("<>｜|")


_phi4 = Phi4MiniFormat.syntax
_gpt_oss = GptOssFormat.syntax
# (format, markers that must all appear, why). The markers are the formats' own; a few words only
# a template writes (`namespace`, `xLAM`, `ipython`) name what else identifies it. A template that
# matches none of them may still teach a syntax toolwire can learn from its own renders (`learned.py`).
_RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("mistral", MistralFormat.syntax.open_markers, "writes calls after [TOOL_CALLS] (Mistral)"),
    ("deepseek_v32", (deepseek_v32.DSML,), "writes DSML <｜DSML｜invoke> calls (DeepSeek V3.2)"),
    ("deepseek", (_bare(deepseek.CALL_BEGIN),), "writes calls between <｜tool▁call▁begin｜> tokens (DeepSeek)"),
    ("gpt_oss", ("<|channel|>", _gpt_oss.close_marker or ""), "ends calls with <|call|> on a commentary channel (gpt-oss harmony)"),
    ("kimi_k2", (kimi_k2.SECTION_BEGIN,), "writes calls in a <|tool_calls_section_begin|> section (Kimi K2)"),
    ("glm45", (glm45.BODY.key_open,), "writes <tool_call>NAME with <arg_key>/<arg_value> pairs (GLM-4.5/4.6/4.7)"),
    ("minimax_m2", (minimax_m2.CALLS_BEGIN,), "writes <invoke> calls in <minimax:tool_call> (MiniMax-M2)"),
    ("seed_oss", (seed_oss.CALL_BEGIN,), "writes <function=NAME> calls in <seed:tool_call> (Seed-OSS)"),
    ("qwen3_coder", (qwen3_coder.BODY.call_open, qwen3_coder.BODY.key_open),
     "writes <function=NAME><parameter=P> XML calls (Qwen3-Coder)"),
    ("gemma4", (Gemma4Format.syntax.open_markers[0] + GEMMA4_LITERAL.prefix,),
     "writes <|tool_call>call:NAME{...} literals (Gemma 4)"),
    ("functiongemma", FunctionGemmaFormat.syntax.open_markers, "writes <start_function_call>call:NAME{...} (FunctionGemma)"),
    ("command_r7b", CommandR7bFormat.syntax.open_markers, "writes calls between <|START_ACTION|> and <|END_ACTION|> (Command R7B)"),
    ("phi4_mini", (_phi4.open_markers[1],), "writes calls as functools[...] (Phi-4-mini, FireFunction)"),
    ("phi4_mini", (_phi4.open_markers[0], _phi4.close_marker or ""),
     "writes calls between <|tool_call|> and <|/tool_call|> (Phi-4-mini)"),
    ("granite", GraniteFormat.syntax.open_markers[:1], "writes calls as <|tool_call|>[...] (Granite 3)"),
    ("lfm2", Lfm2Format.syntax.open_markers, "writes pythonic calls between <|tool_call_start|> and <|tool_call_end|> (LFM2)"),
    ("lfm2", ("List of tools: ",), "lists tools as `List of tools: [...]` (LFM2)"),
    ("nemotron", NemotronFormat.syntax.open_markers, "writes JSON call lists between <TOOLCALL> and </TOOLCALL> (Nemotron Nano v2)"),
    ("apriel", (AprielFormat.syntax.open_markers[0], (AprielFormat.syntax.reasoning or ("", ""))[1]),
     "writes JSON call lists in <tool_calls> (Apriel)"),
    ("xlam", ("xLAM",), "answers with a bare JSON list of calls (xLAM)"),
    ("functionary_v3_2", (FunctionaryV32Format.syntax.open_markers[0], "namespace"), "writes >>>NAME blocks (Functionary v3.2)"),
    ("functionary_v3_1", FunctionaryV31Format.syntax.open_markers, "writes <function=NAME>{...}</function> calls (Functionary v3.1)"),
    ("hermes", HermesFormat.syntax.open_markers, "writes calls between <tool_call> and </tool_call> (Hermes / Qwen)"),
    ("pythonic", PythonicFormat.syntax.open_markers, "writes pythonic calls in <|python_start|> (Llama 4)"),
    ("pythonic", ("func_name1(",), "teaches [func_name(param=value)] pythonic calls"),
    ("llama3_json", Llama3JsonFormat.syntax.open_markers,
     'writes {"name", "parameters"} JSON, optionally after <|python_tag|> (Llama 3.x)'),
    ("llama3_json", ('"parameters": ', "ipython"), 'writes {"name", "parameters"} JSON with ipython results (Llama 3.x)'),
    ("llama3_json", ("<|header_start|>", "parameters"), 'writes {"name", "parameters"} JSON (Llama 4)'),
    ("command_r_plus", (CommandRPlusFormat.syntax.open_markers[0].split()[0], CommandRPlusFormat.syntax.name_keys[0]),
     "writes Action: ```json [...]``` lists (Command R+)"),
)


def detect_format(template_source: str) -> Detection:
    """The tool format a template teaches, and why; `default` when it teaches none."""
    for format_name, markers, reason in _RULES:
        if all(marker in template_source for marker in markers):
            return Detection(format_name, reason)
    if "tools" in template_source:
        return Detection("default", "the template mentions tools but teaches no call syntax toolwire knows")
    return Detection("default", "the template teaches no tool-call syntax")
