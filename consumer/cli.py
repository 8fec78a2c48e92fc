"""``pcq consume``: take items off the Redis list until drained or SIGTERM."""

from __future__ import annotations

import signal
import socket
import sys
import threading
from typing import Annotated

import typer

from pcq.core.cli.options import (
    LedgerOption,
    QueueOption,
    RedisUrlOption,
    checked_ledger,
    route_signals,
)
from pcq.core.console import Console
from pcq.core.errors import UsageProblem
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.transport import AckMode

__all__ = ["consume", "register"]


# The options, one alias each, so that the command's signature stays readable.
Drain = Annotated[
    bool,
    typer.Option(
        "--drain",
        help="Exit once every stream is closed and nothing is queued or in flight "
        "(default: serve until SIGTERM).",
    ),
]
MaxDelay = Annotated[
    float | None,
    typer.Option(
        "--max-delay",
        help="Simulated work: random sleep of 0 to SECONDS (env PCQ_MAX_DELAY; 0.5).",
    ),
]
Quiet = Annotated[bool, typer.Option("--quiet", help="No per-item lines.")]
Batch = Annotated[
    int | None,
    typer.Option("--batch", help="Items claimed per Redis round trip (env PCQ_BATCH; 1)."),
]
Ack = Annotated[
    AckMode | None,
    typer.Option(
        "--ack",
        help="When to acknowledge (env PCQ_ACK; item): item (after each item; a slow item at "
        "once) or batch (a batch's handled items together: less CPU per item, but a consumer "
        "killed mid-batch has the batch's handled items delivered again).",
    ),
]
MaxDeliveries = Annotated[
    int | None,
    typer.Option(
        "--max-deliveries",
        help="Deliveries before a failing item is dead-lettered (env PCQ_MAX_DELIVERIES; 5).",
    ),
]
Check = Annotated[
    bool,
    typer.Option(
        "--check",
        help="Health check: exit 0 iff the health file (env PCQ_HEALTH_FILE; "
        "/tmp/pcq-consumer.alive) says a heartbeat Redis acknowledged is still alive, else 1. "
        "The container healthcheck tests the same file with find, without Python.",
    ),
]
MetricsPort = Annotated[
    int | None,
    typer.Option(
        "--metrics-port",
        envvar="PCQ_METRICS_PORT",
        help="Serve Prometheus metrics at http://ADDR:PORT/metrics (env PCQ_METRICS_PORT; "
        "default: off).",
    ),
]
MetricsAddr = Annotated[
    str,
    typer.Option(
        "--metrics-addr",
        envvar="PCQ_METRICS_ADDR",
        help="Address the metrics server listens on (env PCQ_METRICS_ADDR; compose: 0.0.0.0 "
        "on its internal network).",
    ),
]


def consume(
    drain: Drain = False,
    max_delay: MaxDelay = None,
    quiet: Quiet = False,
    batch: Batch = None,
    ack: Ack = None,
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    max_deliveries: MaxDeliveries = None,
    check: Check = False,
    ledger: LedgerOption = None,
    metrics_port: MetricsPort = None,
    metrics_addr: MetricsAddr = "127.0.0.1",
) -> None:
    """Consume items from the Redis list (SIGTERM: finish the item in hand, exit 0).

    A body starting with "poison" always makes the demo handler raise: it is
    redelivered, then dead-lettered after --max-deliveries.
    """
    settings = RedisSettings.from_env().with_overrides(
        url=redis_url, queue=queue, batch=batch, ack=ack, max_delay=max_delay,
        max_deliveries=max_deliveries,
    )
    if check:
        from pcq.core.redis_list.health import read_health

        if not settings.health_file:
            raise UsageProblem("--check needs a health file (PCQ_HEALTH_FILE is empty)")
        healthy, why = read_health(settings.health_file)
        print(why, file=sys.stdout if healthy else sys.stderr)
        raise typer.Exit(0 if healthy else 1)
    ledger = checked_ledger(ledger)
    if metrics_port is not None and not 1 <= metrics_port <= 65535:
        raise UsageProblem(f"--metrics-port must be between 1 and 65535, got {metrics_port}")
    halt = threading.Event()
    received = route_signals(halt)
    console = Console(quiet=quiet, host=socket.gethostname())
    from pcq.consumer.run import run_consumer

    metrics, stop_metrics = None, None
    if metrics_port is not None:
        from pcq.consumer.metrics import ConsumerMetrics  # here: prometheus-client when asked

        metrics = ConsumerMetrics(settings.queue, settings.max_deliveries)
        stop_metrics = metrics.serve(metrics_port, metrics_addr)
    try:
        run_consumer(settings, console, drain=drain, stop=halt, ledger=ledger, metrics=metrics)
    finally:
        if stop_metrics is not None:
            stop_metrics()
    # SIGTERM is the orderly way to stop a service (docker stop): exit 0.
    raise typer.Exit(130 if signal.SIGINT in received else 0)


def register(app: typer.Typer) -> None:
    """Add ``pcq consume`` to the CLI."""
    app.command("consume")(consume)
