"""Prometheus metrics of one consumer process (``pcq consume --metrics-port``).

Hooked in from outside the transport, so the list consumer's code stays as it is:

* :meth:`ConsumerMetrics.timed` wraps the handler (handler time);
* :meth:`ConsumerMetrics.observe` wraps the :class:`~pcq.core.transport.BatchAckConsumer`
  that :func:`pcq.core.redis_list.serve.serve` builds, in :class:`MeteredConsumer`:
  every claimed batch (time queued since the item's ``produced_at``, redeliveries,
  in flight) and every settlement (ack: handled; nack: failed, and dead-lettered
  when it was the item's last delivery; release: back to the queue).

Metrics, all labelled ``queue``::

    pcq_consumer_handled_total         counter    items handled and acknowledged
    pcq_consumer_failed_total          counter    handler failures (each nack)
    pcq_consumer_redelivered_total     counter    items claimed again (delivery >= 2)
    pcq_consumer_dead_lettered_total   counter    items this consumer dead-lettered
    pcq_consumer_handler_seconds       histogram  time in the handler
    pcq_consumer_queued_seconds        histogram  claim time - produced_at
    pcq_consumer_in_flight             gauge      items claimed, not yet settled

Served by prometheus-client's own HTTP server, in a daemon thread. Items a
consumer never hands to the handler (undecodable payloads, dead-lettered at
claim) and those a reaper requeues or dead-letters for a dead consumer are
queue-level events: the dashboard's ``/metrics`` shows them
(:mod:`pcq.core.monitor.gauges`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pcq.core.errors import UsageProblem
from pcq.core.pattern import Handler
from pcq.core.transport import BatchAckConsumer, Item

__all__ = ["ConsumerMetrics", "MeteredConsumer"]

# Seconds: the demo's handler sleeps 0 to PCQ_MAX_DELAY (0.5 s by default).
HANDLER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUEUED_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class ConsumerMetrics:
    """The metrics of one consumer of ``queue`` (a registry of their own)."""

    def __init__(self, queue: str, max_deliveries: int) -> None:
        self.max_deliveries = max_deliveries
        self.registry = CollectorRegistry()
        reg, q = self.registry, [queue]

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, ["queue"], registry=reg).labels(*q)

        self.handled = counter("pcq_consumer_handled", "Items handled and acknowledged.")
        self.failed = counter("pcq_consumer_failed", "Handler failures (each nack).")
        self.redelivered = counter("pcq_consumer_redelivered", "Items claimed again (delivery >= 2).")
        self.dead_lettered = counter("pcq_consumer_dead_lettered", "Items this consumer dead-lettered.")
        self.handler_seconds = Histogram(
            "pcq_consumer_handler_seconds", "Time in the handler.", ["queue"], registry=reg,
            buckets=HANDLER_BUCKETS).labels(*q)  # fmt: skip
        self.queued_seconds = Histogram(
            "pcq_consumer_queued_seconds", "From produced_at to the claim.", ["queue"],
            registry=reg, buckets=QUEUED_BUCKETS).labels(*q)  # fmt: skip
        self.in_flight = Gauge("pcq_consumer_in_flight", "Items claimed, not yet settled.",
                               ["queue"], registry=reg).labels(*q)  # fmt: skip

    def timed(self, handle: Handler) -> Handler:
        """``handle``, timed into ``pcq_consumer_handler_seconds`` (failures too)."""
        histogram = self.handler_seconds

        def timed_handle(item: Item) -> None:
            with histogram.time():
                handle(item)

        return timed_handle

    def observe(self, consumer: BatchAckConsumer) -> BatchAckConsumer:
        """``consumer``, counted (see :class:`MeteredConsumer`)."""
        return MeteredConsumer(consumer, self)

    def serve(self, port: int, addr: str = "127.0.0.1") -> Callable[[], None]:
        """Serve ``/metrics`` on ``addr:port`` in a daemon thread; return a function that stops it."""
        try:
            httpd, thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise UsageProblem(f"--metrics-port {port} on {addr}: {exc.strerror or exc}") from None

        def stop() -> None:
            httpd.shutdown()
            httpd.server_close()
            thread.join(timeout=5)

        return stop


class MeteredConsumer:
    """A :class:`~pcq.core.transport.BatchAckConsumer` that counts what passes through another one."""

    def __init__(self, inner: BatchAckConsumer, metrics: ConsumerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    def get(self, timeout: float) -> Sequence[Item] | None:
        batch = self.inner.get(timeout)
        if batch:
            m, now = self.metrics, time.time()
            m.in_flight.inc(len(batch))
            for item in batch:
                m.queued_seconds.observe(max(0.0, now - item.produced_at))
                if item.deliveries > 1:
                    m.redelivered.inc()
        return batch

    def ack(self, item: Item) -> None:
        self.inner.ack(item)
        self.metrics.handled.inc()
        self.metrics.in_flight.dec()

    def ack_many(self, items: Sequence[Item]) -> None:
        self.inner.ack_many(items)
        self.metrics.handled.inc(len(items))
        self.metrics.in_flight.dec(len(items))

    def nack(self, item: Item, reason: str) -> None:
        self.inner.nack(item, reason)
        m = self.metrics
        m.failed.inc()
        if item.deliveries >= m.max_deliveries:  # the list consumer's rule: last delivery
            m.dead_lettered.inc()
        m.in_flight.dec()

    def holds(self, item: Item) -> bool:
        return self.inner.holds(item)

    def release(self, items: Sequence[Item]) -> None:
        self.inner.release(items)
        self.metrics.in_flight.dec(len(items))
