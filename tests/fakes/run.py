"""Run one fake backend as its own process (so a test can SIGKILL it), answering every request
with the continuing `weather_or_echo` model on a Qwen-style vocabulary.

    python -m tests.fakes.run {llamacpp,vllm,ollama} --port PORT [--token-delay SECONDS]

Prints `READY <url>` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio

from tests.fakes.llamacpp import FakeLlamaServer
from tests.fakes.model import ContinuingModel, weather_or_echo
from tests.fakes.ollama import FakeModel, FakeOllama
from tests.fakes.server import LoopbackServer
from tests.fakes.vllm import FakeVllmServer

QWEN_SPECIAL = {"<tool_call>", "</tool_call>", "<|im_end|>", "<|im_start|>", "<|endoftext|>"}
OLLAMA_MODEL = "qwen2.5:7b"
VLLM_MODEL = "Qwen/Qwen2.5-7B-Instruct"


def make_fake(kind: str, token_delay: float) -> LoopbackServer:
    model = ContinuingModel(weather_or_echo)
    if kind == "llamacpp":
        return FakeLlamaServer(bos_token="", eos_token="<|endoftext|>", special_tokens=QWEN_SPECIAL, n_ctx=32768,
                               total_slots=4096, default_reply=model, token_delay=token_delay)
    if kind == "vllm":
        return FakeVllmServer(model=VLLM_MODEL, eos_token="<|im_end|>", max_model_len=32768,
                              default_reply=model, token_delay=token_delay)
    if kind == "ollama":
        qwen = FakeModel(name=OLLAMA_MODEL, architecture="qwen2", context_length=32768, parameters={})
        return FakeOllama(models=[qwen], special_tokens={"<|im_start|>"}, eog_tokens={"<|im_end|>", "<|endoftext|>"},
                          default_reply=model, token_delay=token_delay)
    raise SystemExit(f"unknown fake kind {kind!r}")


async def serve(kind: str, port: int, token_delay: float) -> None:
    fake = make_fake(kind, token_delay)
    url = await fake.start(port)
    print(f"READY {url}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["llamacpp", "vllm", "ollama"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.kind, args.port, args.token_delay))


if __name__ == "__main__":
    main()
