"""Queue-level Prometheus gauges, computed from the monitoring view: :class:`ViewCollector`.

The consumers count what they do themselves (``pcq consume --metrics-port``,
:mod:`pcq.consumer.metrics`); what belongs to the queue as a whole -- its length,
items in flight, dead letters, consumers alive, open streams, RQ's registries --
is read from Redis in one place, :func:`pcq.core.monitor.view.read_view`, and
exposed here by whoever holds the latest view (``pcq dashboard``'s ``/metrics``).
A scrape never reads Redis: it reports the view the poller read last, with
``pcq_view_age_seconds`` saying how old it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["QUEUE_GAUGES", "ViewCollector"]

# metric name -> (the view's key, help text)
QUEUE_GAUGES: dict[str, tuple[str, str]] = {
    "pcq_queue_length": ("length", "Items waiting in the list queue."),
    "pcq_queue_in_flight": ("in_flight", "Items claimed by consumers and not yet settled."),
    "pcq_queue_dead_letters": ("dead_letters", "Items in the dead-letter list."),
    "pcq_queue_consumers_alive": ("consumers_alive", "Registered consumers with a live heartbeat."),
    "pcq_queue_consumers_registered": ("consumers", "Registered consumers, alive or dead."),
    "pcq_queue_open_streams": ("open_runs", "Runs whose producer has not closed its stream."),
    "pcq_queue_items_per_second": (
        "items_per_second", "Acknowledgements per second, the live consumers' last 10 s."),
}  # fmt: skip


class ViewCollector(Collector):
    """Yields the queue gauges of the view ``latest()`` returns (nothing before the first)."""

    def __init__(self, latest: Callable[[], dict[str, Any] | None]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[GaugeMetricFamily]:
        view = self.latest()
        if view is None or "queue" not in view:
            return
        queue = view["queue"]
        for name, (key, doc) in QUEUE_GAUGES.items():
            value = view.get(key)
            if isinstance(value, list):
                value = len(value)
            if value is None:
                continue  # not readable with these credentials, or no rate yet
            family = GaugeMetricFamily(name, doc, labels=["queue"])
            family.add_metric([queue], float(value))
            yield family
        age = GaugeMetricFamily("pcq_view_age_seconds", "Seconds since the view was read.",
                                labels=["queue"])  # fmt: skip
        age.add_metric([queue], max(0.0, time.time() - view["at"]))
        yield age
        yield from _rq_gauges(view.get("rq"))


def _rq_gauges(rq: dict[str, Any] | None) -> Iterator[GaugeMetricFamily]:
    if rq is None:
        return
    length = GaugeMetricFamily("pcq_rq_queue_length", "Jobs waiting in the RQ queue.",
                               labels=["queue"])  # fmt: skip
    length.add_metric([rq["queue"]], float(rq["length"]))
    yield length
    reg = GaugeMetricFamily("pcq_rq_registry_jobs", "Jobs in each RQ registry.",
                            labels=["queue", "registry"])  # fmt: skip
    for name, n in rq["registries"].items():
        reg.add_metric([rq["queue"], name], float(n))
    yield reg
    workers = GaugeMetricFamily("pcq_rq_workers", "RQ workers of the queue.", labels=["queue"])
    workers.add_metric([rq["queue"]], float(rq["workers"]))
    yield workers
