"""``pcq produce``: push a run of items onto the Redis list and print its tally."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console as RichConsole
from rich.table import Table

from pcq.core.cli.options import (
    LedgerOption,
    NamesFileOption,
    QueueOption,
    RedisUrlOption,
    checked_ledger,
    names_from,
    route_signals,
)
from pcq.core.console import Console
from pcq.core.errors import PcqError, UsageProblem
from pcq.core.names import item_bodies
from pcq.core.redis_common.settings import RedisSettings, parse_size

__all__ = ["produce", "register", "render_tally"]


def render_tally(tally: dict[str, Any], stream: TextIO) -> None:
    """Print the tally as a Rich table: items per consumer, then the totals."""
    title = f"run {tally['run']} on queue {tally['queue']}"
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column("consumer")
    table.add_column("items", justify="right")
    for consumer, count in tally["per_consumer"].items():
        table.add_row(consumer, str(count))
    table.add_section()
    for key in ("produced", "consumed", "lost", "duplicates", "redelivered", "dead_letters"):
        table.add_row(key.replace("_", " "), str(tally[key]))
    table.add_row("seconds", f"{tally['seconds']:.3f}")
    table.add_row("items/s", f"{tally['items_per_second']:.1f}")
    RichConsole(file=stream, highlight=False).print(table)


# The options, one alias each, so that the command's signature stays readable.
Items = Annotated[
    int | None,
    typer.Option("--items", min=0, help="Generate N names (env PCQ_ITEMS; default: the seed's 14)."),
]
Batch = Annotated[
    int | None, typer.Option("--batch", help="Items per Redis round trip (env PCQ_BATCH; 1).")
]
HighWater = Annotated[
    int | None,
    typer.Option("--high-water", help="Wait while the queue is this long (env PCQ_HIGH_WATER; 10000)."),
]
HighWaterBytes = Annotated[
    str | None,
    typer.Option(
        "--high-water-bytes",
        help="Also wait while the queue list takes this much memory in Redis, e.g. 64mb "
        "(MEMORY USAGE; env PCQ_HIGH_WATER_BYTES; 0: off).",
    ),
]
FullTimeout = Annotated[
    float | None,
    typer.Option(
        "--full-timeout",
        help="Give up after Redis stayed full (maxmemory) this many seconds "
        "(env PCQ_FULL_TIMEOUT; 300).",
    ),
]
Timeout = Annotated[
    float,
    typer.Option("--timeout", min=0, help="Longest wait for the tally, seconds (0: do not wait)."),
]
AsJson = Annotated[
    bool, typer.Option("--json", help="One JSON tally on stdout; demo lines go to stderr.")
]
Via = Annotated[
    str, typer.Option("--via", help="list: the reliable Redis list; rq: one RQ job per item.")
]


def produce(
    items: Items = None,
    names_file: NamesFileOption = None,
    batch: Batch = None,
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    high_water: HighWater = None,
    high_water_bytes: HighWaterBytes = None,
    full_timeout: FullTimeout = None,
    timeout: Timeout = 600.0,
    as_json: AsJson = False,
    via: Via = "list",
    ledger: LedgerOption = None,
) -> None:
    """Push items onto the Redis list, then print the run's tally read back from Redis."""
    names = names_from(items, names_file)
    if via not in ("list", "rq"):
        raise typer.BadParameter(f"{via!r} is not one of 'list', 'rq'", param_hint="'--via'")
    if ledger is not None and via != "list":
        raise UsageProblem("--ledger records list runs only (RQ keeps its own registries)")
    settings = RedisSettings.from_env().with_overrides(
        url=redis_url, queue=queue, batch=batch, high_water=high_water, items=items,
        high_water_bytes=_size("--high-water-bytes", high_water_bytes), full_timeout=full_timeout,
    )
    ledger = checked_ledger(ledger)
    texts = item_bodies(settings.items, names)
    out = sys.stderr if as_json else sys.stdout
    console = Console(stream=out, host=socket.gethostname())
    halt = threading.Event()
    received = route_signals(halt)
    if via == "list":
        from pcq.producer.run import run_producer  # here: `pcq --help` needs no Redis client

        tally = run_producer(settings, texts, console, timeout=timeout, stop=halt, ledger=ledger)
    else:
        from pcq.core.rq_jobs.producer import run_rq_producer

        tally = run_rq_producer(settings, texts, console, timeout=timeout, stop=halt)
    _report(tally, as_json=as_json, timeout=timeout, received=received)


def _size(option: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise UsageProblem(f"{option}: {exc}") from None


def _report(tally: dict[str, Any], *, as_json: bool, timeout: float, received: list[int]) -> None:
    """Print the tally; exit 130/143 if a signal stopped us, 1 if it timed out."""
    if as_json:
        sys.stdout.write(json.dumps(tally) + "\n")
        sys.stdout.flush()
    elif timeout > 0:
        render_tally(tally, sys.stdout)
    else:
        print(f"produced {tally['produced']} item(s) as run {tally['run']} (not waiting)")
    if received:
        print(f"pcq: interrupted: {tally['lost']} item(s) not yet accounted for", file=sys.stderr)
        raise typer.Exit(130 if signal.SIGINT in received else 143)
    if timeout > 0 and not tally["complete"]:
        raise PcqError(f"timed out after {timeout:g}s: {tally['lost']} item(s) not yet accounted for")


def register(app: typer.Typer) -> None:
    """Add ``pcq produce`` to the CLI."""
    app.command("produce")(produce)
