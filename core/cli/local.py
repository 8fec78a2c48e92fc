"""``pcq local``: the multiprocessing producer/consumer demo on this machine."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import sys
from pathlib import Path
from typing import Annotated

import typer

from pcq.core.cli.options import NamesFileOption, names_from
from pcq.core.console import discard_stream
from pcq.core.errors import PcqError, UsageProblem
from pcq.core.local.children import stop_helpers
from pcq.core.local.result import render_table
from pcq.core.local.run import LocalConfig, default_start_method, run_local
from pcq.core.transport import AckMode

__all__ = ["local", "register"]

MAX_ITEMS = 50_000_000
MAX_PROCESSES = 512  # per role: each is a real process (and ~10 MB of memory)
START_METHOD_HELP = (
    "How children start: fork (default on Linux: a millisecond per child; our parent "
    "runs no threads, the reason 3.14 moved Linux to forkserver), spawn (a fresh "
    "interpreter, the macOS/Windows default) or forkserver."
)


def build_config(
    *,
    producers: int | None,
    consumers: int | None,
    items: int | None,
    names_file: Path | None,
    max_delay: float,
    seed: int | None,
    start_method: str,
    queue_size: int | None,
    batch: int,
    quiet: bool,
    as_json: bool,
    max_deliveries: int,
    kill_consumer_after: int | None,
    ack: AckMode = AckMode.ITEM,
    fail_on: str | None = None,
) -> LocalConfig:
    """Validate the options (usage errors exit 2) and build the run's config."""
    names = names_from(items, names_file)
    if items is not None and items > MAX_ITEMS:
        # the shared state takes 12 bytes per item, allocated up front
        raise UsageProblem(f"--items must be at most {MAX_ITEMS:,}, not {items:,}")
    if not math.isfinite(max_delay) or max_delay < 0:
        raise UsageProblem(f"--max-delay must be a number >= 0, not {max_delay}")
    if start_method not in mp.get_all_start_methods():
        methods = ", ".join(mp.get_all_start_methods())
        raise UsageProblem(f"--start-method {start_method} is not available here ({methods})")
    return LocalConfig(
        producers=producers,
        consumers=consumers,
        items=items,
        names=names,
        max_delay=max_delay,
        seed=seed,
        start_method=start_method,
        queue_size=queue_size,
        batch=batch,
        quiet=quiet,
        json=as_json,
        max_deliveries=max_deliveries,
        kill_consumer_after=kill_consumer_after,
        ack=ack,
        fail_on=fail_on,
    )


DEFAULT_START_METHOD = default_start_method()

# The options, one alias each, so that the command's signature stays readable.
Producers = Annotated[
    int | None,
    typer.Option(
        "--producers", min=1, max=MAX_PROCESSES,
        help="Producer processes (default: one per name list, 3 for the seed's lists).",
    ),
]
Consumers = Annotated[
    int | None,
    typer.Option(
        "--consumers", min=1, max=MAX_PROCESSES, help="Consumer processes (default: 2 x producers)."
    ),
]
Items = Annotated[
    int | None,
    typer.Option("--items", min=0, help="Generate N names instead of the seed's lists."),
]
MaxDelay = Annotated[
    float,
    typer.Option("--max-delay", help="Simulated work per item: random sleep in [0, SECONDS]."),
]
Seed = Annotated[int | None, typer.Option("--seed", help="Seed the random work times.")]
StartMethod = Annotated[str, typer.Option("--start-method", help=START_METHOD_HELP)]
QueueSize = Annotated[
    int | None,
    typer.Option(
        "--queue-size", min=1,
        help="Bound the queue to N messages: producers block when full (backpressure).",
    ),
]
Batch = Annotated[int, typer.Option("--batch", min=1, help="Items per queue message (speed).")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No per-item lines.")]
AsJson = Annotated[
    bool, typer.Option("--json", help="One JSON object on stdout; demo lines go to stderr.")
]
MaxDeliveries = Annotated[
    int,
    typer.Option(
        "--max-deliveries", min=1, help="Dead-letter an item whose handler failed N times."
    ),
]
Ack = Annotated[
    AckMode,
    typer.Option(
        "--ack",
        help="When consumers acknowledge: item (after each item; a consumer killed mid-batch "
        "has only the item in hand redelivered) or batch (a batch's handled items at once, "
        "at its end: cheaper, but a consumer killed mid-batch has its whole unacknowledged "
        "batch redelivered).",
    ),
]
KillAfter = Annotated[
    int | None,
    typer.Option(
        "--kill-consumer-after", min=1, hidden=True,
        help="Test hook: the first consumer SIGKILLs itself in the middle of its Nth item.",
    ),
]
FailOn = Annotated[
    str | None,
    typer.Option(
        "--fail-on", hidden=True, help="Test hook: the handler raises on names with TEXT."
    ),
]


def local(
    producers: Producers = None,
    consumers: Consumers = None,
    items: Items = None,
    names_file: NamesFileOption = None,
    max_delay: MaxDelay = 0.5,
    seed: Seed = None,
    start_method: StartMethod = DEFAULT_START_METHOD,
    queue_size: QueueSize = None,
    batch: Batch = 1,
    quiet: Quiet = False,
    as_json: AsJson = False,
    max_deliveries: MaxDeliveries = 5,
    ack: Ack = AckMode.ITEM,
    kill_consumer_after: KillAfter = None,
    fail_on: FailOn = None,
) -> None:
    """Run the seed's producer/consumer demo with processes on this machine."""
    cfg = build_config(
        producers=producers, consumers=consumers, items=items, names_file=names_file,
        max_delay=max_delay, seed=seed, start_method=start_method, queue_size=queue_size,
        batch=batch, quiet=quiet, as_json=as_json, max_deliveries=max_deliveries,
        kill_consumer_after=kill_consumer_after, fail_on=fail_on, ack=ack,
    )
    try:
        result = run_local(cfg)
    except OSError as exc:  # e.g. out of processes or file descriptors
        raise PcqError(f"cannot run the local demo: {exc}") from None
    stop_helpers()  # pcq exits next: reap multiprocessing's helper processes
    try:
        if as_json:
            sys.stdout.write(json.dumps(result.to_json(), default=lambda o: o.__dict__) + "\n")
        else:
            render_table(result, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:  # `pcq local | head`: the reader has all it wanted
        discard_stream(sys.stdout)
    if result.failure:
        raise PcqError(result.failure)
    if result.interrupted:
        print(
            f"pcq: interrupted ({result.stopped_by}): {result.lost} item(s) produced but "
            "not consumed, "
            f"{result.not_produced} never produced",
            file=sys.stderr,
        )
    elif result.exit_code:
        print(f"pcq: error: {result.lost} item(s) unaccounted for", file=sys.stderr)
    raise typer.Exit(result.exit_code)


def register(app: typer.Typer) -> None:
    """Add ``pcq local`` to the CLI."""
    app.command("local")(local)
