"""`toolwire serve --config PATH`: load the routing table and run the gateway."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from .app import check_config
from .check import run_check
from .event_loop import LOOP_CHOICES, LoopUnavailable, loop_name, run
from .ops.config import ConfigError, default_config_path, load_config
from .ops.logging_setup import configure_logging
from .ps import gateway_url, run_ps
from .server import serve
from .workers import supervise, worker_count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toolwire", description="OpenAI tool calling for raw completion backends.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_command = commands.add_parser("serve", help="run the gateway")
    serve_command.add_argument("--config", help="routing table YAML (default: $TOOLWIRE_CONFIG or config/toolwire.yaml)")
    serve_command.add_argument("--host", help="override listen.host")
    serve_command.add_argument("--port", type=int, help="override listen.port")
    serve_command.add_argument("--workers", default="1", help="gateway processes on the one port: a number or 'auto' (one per core)")
    serve_command.add_argument("--loop", choices=LOOP_CHOICES, default="auto", help="event loop (auto: uvloop when installed)")
    serve_command.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # started by --workers
    check = commands.add_parser("check", help="validate the config and probe every backend and model")
    check.add_argument("--config", help="routing table YAML (default: $TOOLWIRE_CONFIG or config/toolwire.yaml)")
    ps = commands.add_parser("ps", help="list the llama-servers a running gateway launched")
    ps.add_argument("--config", help="the gateway's config, for its listen address (default as for serve)")
    ps.add_argument("--url", help="the gateway's base URL instead, e.g. http://127.0.0.1:8000")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "ps" and args.url:
        return run_ps(args.url)
    path = args.config or default_config_path()
    try:
        config = load_config(path)
        check_config(config, str(path))
    except ConfigError as error:
        print(f"toolwire: bad configuration:\n{error}", file=sys.stderr)
        return 2
    if args.command == "check":
        return asyncio.run(run_check(config, str(path)))
    if args.command == "ps":
        return run_ps(gateway_url(config))
    configure_logging(config.log_level)
    host = args.host or config.listen.host
    port = args.port or config.listen.port
    try:
        workers = worker_count(args.workers)
        loop = loop_name(args.loop)
    except (ValueError, LoopUnavailable) as error:
        print(f"toolwire: {error}", file=sys.stderr)
        return 2
    launched = [backend.name for backend in config.backends if backend.launch is not None]
    if workers > 1 and launched:
        # Each worker is a whole gateway: each would start (and load) its own llama-servers.
        print(f"toolwire: --workers {workers} cannot serve backends toolwire launches itself "
              f"({', '.join(launched)}): each worker would start its own llama-server. "
              "Use one worker, or run llama-server separately and give the backend a `url:`.", file=sys.stderr)
        return 2
    if workers > 1 and not args.worker:
        print(f"toolwire: serving {len(config.models)} model(s) on http://{host}:{port}/v1 with {workers} workers "
              f"({loop})", file=sys.stderr)
        return supervise(workers, str(path), host, port, args.loop)
    if not args.worker:
        print(f"toolwire: serving {len(config.models)} model(s) on http://{host}:{port}/v1 ({loop})", file=sys.stderr)
    run(serve(config, Path(path), host, port, reuse_port=args.worker), args.loop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
