"""The launched llama-servers in /metrics, read from the fleet at each scrape (nothing to keep
in step): state, memory, requests in flight, loads, restarts and the last load's duration."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.backends.managed import Fleet, ModelState


class FleetCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = fleet

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "toolwire_managed_model_state", "1 for the state each launched model is in.", labels=["backend", "model", "state"]
        )
        rss = GaugeMetricFamily("toolwire_managed_model_rss_bytes", "Resident memory of the model's server.", labels=["backend"])
        in_flight = GaugeMetricFamily(
            "toolwire_managed_model_in_flight", "Requests using the model's server now.", labels=["backend"]
        )
        load_seconds = GaugeMetricFamily(
            "toolwire_managed_model_load_seconds", "How long the last load took, to a healthy server.", labels=["backend"]
        )
        loads = CounterMetricFamily("toolwire_managed_model_loads", "Successful loads of the model.", labels=["backend"])
        restarts = CounterMetricFamily(
            "toolwire_managed_model_restarts", "Loads after the server had crashed.", labels=["backend"]
        )
        for status in self._fleet.statuses():
            for name in ModelState:
                state.add_metric([status.backend, status.model, name.value], 1.0 if status.state == name.value else 0.0)
            if status.rss_bytes is not None:
                rss.add_metric([status.backend], status.rss_bytes)
            in_flight.add_metric([status.backend], status.in_flight)
            if status.last_load_seconds is not None:
                load_seconds.add_metric([status.backend], status.last_load_seconds)
            loads.add_metric([status.backend], status.loads)
            restarts.add_metric([status.backend], status.restarts)
        yield from (state, rss, in_flight, load_seconds, loads, restarts)
