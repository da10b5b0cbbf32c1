"""Metrics across worker processes: with `toolwire serve --workers N` every worker writes its
samples to the directory in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode,
chosen when the library is imported), and `/metrics` on any worker serves their sum."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def exposed_registry(own: CollectorRegistry) -> CollectorRegistry:
    """What `/metrics` serves: this process's registry, or every worker's samples summed."""
    if not os.environ.get(MULTIPROC_ENV):
        return own
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged)
    return merged
