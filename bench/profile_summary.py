"""Summarise a py-spy raw (collapsed) profile: where the gateway's samples went.

    .venv/bin/python bench/profile_summary.py PROFILE.txt [--top 15]

Prints the functions with the most samples on top of the stack (self) and the stages a sample
passed through (inclusive): upstream read, parser, encoder, SSE write, logging, the event loop.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:]+)(?::\d+)?\)$")

# A sample counts for a stage when any of its frames matches (first match wins, in this order).
STAGES = {
    "upstream read + decode (backends/)": ("adapters/backends/",),
    "parser (formats/)": ("adapters/formats/",),
    "call checks": ("call_checks.py",),
    "chat chunk encoding": ("chat_encoding.py",),
    "SSE write (aiohttp web_response / http_writer)": ("web_response.py", "http_writer.py"),
    "request parse + prompt render": ("chat_request.py", "prompt.py", "chat_template.py", "jinja2/"),
    "logging + metrics": ("structlog/", "logging/", "prometheus_client/", "middleware.py"),
}


def frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame.strip())
        out.append((match["func"], match["file"]) if match else (frame, ""))
    return out


def summarise(path: Path, top: int) -> str:
    self_counts: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        stack, count = frames(match[1]), int(match[2])
        total += count
        func, file = stack[-1]
        self_counts[f"{func} ({'/'.join(Path(file).parts[-2:])})"] += count
        files = " ".join(file for _, file in stack)
        stage = next((name for name, needles in STAGES.items() if any(n in files for n in needles)), "other (event loop, aiohttp server/client, idle)")
        stages[stage] += count
    lines = [f"{total} samples", "", "stage (inclusive, first match)             share"]
    lines += [f"  {name:<48} {count / total:6.1%}" for name, count in stages.most_common()]
    lines += ["", "top functions (self)"]
    lines += [f"  {count / total:6.1%}  {name}" for name, count in self_counts.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
