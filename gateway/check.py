"""`toolwire check`: validate the config, probe every backend and route, print a table.

Exit status 0 when every backend answers and every model's template and tool format are found;
1 otherwise. The same checks a request would hit, run up front.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from adapters.backends.errors import BackendError
from adapters.backends.managed import Fleet
from adapters.formats.learned import LearnedFormat

from .app import build_routing_table
from .core.faults import Fault
from .core.routing import Route, is_glob
from .ops.config import GatewayConfig


@dataclass(frozen=True, slots=True)
class Row:
    model: str
    backend: str
    reachable: str
    model_found: str
    template: str
    tool_format: str
    ok: bool
    learned: str = ""  # what a learned tool format was learned as


async def run_check(config: GatewayConfig, source: str) -> int:
    fleet = Fleet(config.limits.max_loaded_models)  # launched servers start for the probe, then stop
    table = build_routing_table(config, fleet=fleet)
    try:
        health = {backend.name: await backend.health() for backend in table.backends}
        rows = [await _check_route(route, health[route.backend.name]) for route in table]
    finally:
        for backend in table.backends:
            await backend.close()
        await fleet.close()
    _print(rows, source)
    return 0 if all(row.ok for row in rows) else 1


async def _check_route(route: Route, reachable: bool) -> Row:
    backend = route.backend.name
    if not reachable:
        return Row(route.name, backend, "no", "?", "?", "?", ok=False)
    if is_glob(route.name):
        # A pattern serves whatever name a client sends: nothing concrete to look up.
        return Row(route.name, backend, "yes", "pattern", "per model", "per model", ok=True)
    upstream = route.upstream_for(route.name)
    try:
        served = await route.backend.list_models()
        found = "yes" if served is None or upstream in served else "no"
    except BackendError as error:
        found = f"? ({error.message})"
    try:
        template, tool_format = await route.template(upstream)
        template_text, format_text, ok = template.name or "loaded", tool_format.name, True
    except (Fault, BackendError) as error:
        template_text, format_text, ok = f"missing: {error}", "?", False
        tool_format = None
    learned = tool_format.summary if isinstance(tool_format, LearnedFormat) else ""
    return Row(route.name, backend, "yes", found, template_text, format_text, ok=ok and found != "no", learned=learned)


def _print(rows: list[Row], source: str) -> None:
    header = ("model", "backend", "reachable", "model found", "template", "tool format", "")
    lines = [header] + [
        (r.model, r.backend, r.reachable, r.model_found, r.template, r.tool_format, "ok" if r.ok else "PROBLEM")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = sys.stdout
    print(f"toolwire check: {source}", file=out)
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip(), file=out)
    for row in rows:
        if row.learned:
            print(f"{row.model}: tool format learned from its template: {row.learned}", file=out)
    problems = sum(not r.ok for r in rows)
    print(f"{len(rows) - problems} ok, {problems} with problems", file=out)
