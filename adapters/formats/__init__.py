"""Tool-call formats, registered by name. Each is a small description over one shared parser."""

from __future__ import annotations

import importlib

from .base import TemplateInput, TemplateTraits, ToolFormat

# Format name -> "module:class" in this package, imported on first use.
_FORMATS = {
    "default": "default:DefaultFormat",
    "hermes": "hermes:HermesFormat",
    "llama3_json": "llama3:Llama3JsonFormat",
    "pythonic": "pythonic:PythonicFormat",
    "mistral": "mistral:MistralFormat",
    "qwen3_coder": "qwen3_coder:Qwen3CoderFormat",
    "gpt_oss": "gpt_oss:GptOssFormat",
    "deepseek": "deepseek:DeepSeekFormat",
    "granite": "json_lists:GraniteFormat",
    "phi4_mini": "json_lists:Phi4MiniFormat",
    "command_r7b": "json_lists:CommandR7bFormat",
    "functionary_v3_2": "functionary:FunctionaryV32Format",
    "functionary_v3_1": "functionary:FunctionaryV31Format",
    "gemma4": "gemma4:Gemma4Format",
    "functiongemma": "gemma4:FunctionGemmaFormat",
    "glm45": "glm45:Glm45Format",
    "kimi_k2": "kimi_k2:KimiK2Format",
    "minimax_m2": "minimax_m2:MiniMaxM2Format",
    "seed_oss": "seed_oss:SeedOssFormat",
    "deepseek_v32": "deepseek_v32:DeepSeekV32Format",
    "lfm2": "pythonic:Lfm2Format",
    "xlam": "json_lists:XlamFormat",
    "nemotron": "json_lists:NemotronFormat",
    "apriel": "json_lists:AprielFormat",
    "command_r_plus": "json_lists:CommandRPlusFormat",
}


def format_names() -> list[str]:
    return list(_FORMATS)


def get_format(name: str) -> ToolFormat:
    """The format registered under `name`; KeyError lists the known ones."""
    try:
        module_name, class_name = _FORMATS[name].split(":")
    except KeyError:
        raise KeyError(f"unknown tool format {name!r} (known: {', '.join(format_names())})") from None
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)()


__all__ = ["TemplateInput", "TemplateTraits", "ToolFormat", "format_names", "get_format"]
