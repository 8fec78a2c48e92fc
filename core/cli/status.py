"""``pcq status`` (one shot) and ``pcq watch`` (live): what is in the queues right now.

Both render the monitoring view, :func:`pcq.core.monitor.view.read_view` (the
same one ``pcq dashboard`` shows): for the Redis list, queue length, items in
flight per consumer, dead letters, consumers alive or dead with their heartbeat
age, the acknowledgement rate, the newest runs' tallies and dead letters; for
RQ, the queue's length, its registries (started, finished, failed, deferred,
scheduled, canceled) and its workers.

The list queue's rate, items/s over the last 10 s:

* ``pcq status`` reads it at once from the consumers' heartbeats: each beat
  carries the consumer's acknowledgement count and the count ~10 s earlier
  (:meth:`pcq.core.redis_list.consumer.ListConsumer.beat`); the live consumers' rates are summed.
  ``--window N`` instead samples the runs' acked counts twice, N seconds apart.
* ``pcq watch`` samples the number of items acknowledged (summed over the
  acked bitmaps and sets of the queue's 50 newest runs, :func:`pcq.core.redis_list.status.acked_total`)
  once per refresh into a :class:`~pcq.core.redis_list.rates.RateWindow` of 10 s,
  so it also counts consumers that died meanwhile. RQ's part is
  :func:`pcq.core.rq_jobs.status.rq_status`.

This module holds the options, the rendering and the watch loop; the reading is
done by :mod:`pcq.core.monitor.view`, imported when a command runs so that
``pcq local`` and ``pcq --help`` never load redis or rq.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console as RichConsole
from rich.console import Group
from rich.live import Live
from rich.table import Table

from pcq.core.cli.options import RedisUrlOption
from pcq.core.errors import UsageProblem
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.rates import RateWindow

if TYPE_CHECKING:
    import redis

__all__ = ["collect", "register"]

WATCH_WINDOW = 10.0


def _acked(status: dict[str, Any]) -> int | None:
    total = status["acked_total"]
    return None if total is None else int(total)


def _rate(before: dict[str, Any], after: dict[str, Any], seconds: float) -> float | None:
    """Items/s acknowledged between two snapshots taken ``seconds`` apart.

    The caller times the gap with a monotonic clock: the snapshots' ``at`` is wall
    time rounded to the millisecond, so two quick snapshots can share it.
    """
    first, last = _acked(before), _acked(after)
    if first is None or last is None or seconds <= 0:
        return None
    return round(max(0, last - first) / seconds, 1)


def collect(client: redis.Redis, settings: RedisSettings, rq_queue: str) -> dict[str, Any]:
    """One snapshot: :func:`pcq.core.monitor.view.read_view` (imported here: the CLI
    loads Redis and RQ only when a command needs them)."""
    from pcq.core.monitor.view import read_view

    return read_view(client, settings, rq_queue)


def _settings(queue: str | None, redis_url: str | None) -> RedisSettings:
    return RedisSettings.from_env().with_overrides(url=redis_url, queue=queue)


def _render(
    status: dict[str, Any], rate: float | None, window: float | None, command: str = "pcq status"
) -> Group:
    when = time.strftime("%H:%M:%S", time.localtime(status["at"]))
    head = Table(
        title=f"{command}: queue {status['queue']} at {when}", title_justify="left", show_header=False
    )
    head.add_column("what")
    head.add_column("value", justify="right")
    head.add_row("queue length", str(status["length"]))
    head.add_row("in flight", str(status["in_flight"]))
    head.add_row("dead letters", str(status["dead_letters"]))
    head.add_row("open streams", str(status["open_runs"]))
    alive = sum(1 for c in status["consumers"] if c["alive"])
    head.add_row("consumers alive", f"{alive} of {len(status['consumers'])}")
    label = f"items/s (last {window:g} s)" if window else "items/s"
    head.add_row(label, "-" if rate is None else f"{rate:,.1f}")
    cons = Table(title="consumers", title_justify="left")
    for name in ("consumer", "alive", "heartbeat age s", "in flight", "acked", "items/s (10 s)"):
        cons.add_column(name, justify="left" if name == "consumer" else "right")
    for c in status["consumers"]:
        age = "-" if c["heartbeat_age"] is None else f"{c['heartbeat_age']:.1f}"
        acked = "-" if c["acked"] is None else f"{c['acked']:,}"
        each = "-" if c["rate"] is None else f"{c['rate']:,.1f}"
        state = "yes" if c["alive"] else str(c["state"]).upper()
        cons.add_row(c["id"], state, age, str(c["in_flight"]), acked, each)
    parts = [head, cons, *_runs_and_dead(status)]
    rq = status["rq"]
    if rq is None:
        return Group(*parts, "RQ: not readable with these credentials (NOPERM)")
    rqt = Table(title=f"RQ queue {rq['queue']}", title_justify="left", show_header=False)
    rqt.add_column("what")
    rqt.add_column("value", justify="right")
    rqt.add_row("queued", str(rq["length"]))
    for name, n in rq["registries"].items():
        rqt.add_row(name, str(n))
    rqt.add_row("workers", str(rq["workers"]))
    return Group(*parts, rqt)


def _runs_and_dead(status: dict[str, Any]) -> list[Table | str]:
    """The newest runs' tallies and dead letters (or a line saying they are not readable)."""
    shown: list[Table | str] = []
    runs, dead = status.get("runs"), status.get("recent_dead_letters")
    if runs is None:
        shown.append("runs: not readable with these credentials (NOPERM)")
    elif runs:
        table = Table(title="runs (newest first)", title_justify="left")
        names = ("produced", "consumed", "lost", "redelivered", "dead_letters")
        table.add_column("run")
        for name in names:
            table.add_column(name.replace("_", " "), justify="right")
        for r in runs:
            table.add_row(r["run"], *(str(r[n]) for n in names))
        shown.append(table)
    if dead:
        table = Table(title="dead letters (newest first)", title_justify="left")
        table.add_column("item")
        table.add_column("reason")
        for d in dead:
            table.add_row(str(d["id"] or "-"), d["reason"])
        shown.append(table)
    return shown


# The options both commands take, one alias each.
ListQueue = Annotated[str | None, typer.Option("--queue", help="List queue (env PCQ_QUEUE; pcq).")]
RqQueue = Annotated[str, typer.Option("--rq-queue", help="RQ queue name.")]


def status(
    queue: ListQueue = None,
    rq_queue: RqQueue = "pcq-rq",
    redis_url: RedisUrlOption = None,
    window: Annotated[
        float,
        typer.Option(
            "--window",
            help="Measure items/s by sampling the runs' acked counts twice, SECONDS apart "
            "[default: 0, the consumers' own rate over their last 10 s, read at once].",
        ),
    ] = 0.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Show the queues once: length, in flight per consumer, dead letters, heartbeats, RQ."""
    if not 0 <= window <= 60:
        raise UsageProblem(f"--window must be between 0 and 60 seconds, got {window}")
    import redis

    from pcq.core.redis_common.connection import connect, explain

    settings = _settings(queue, redis_url)
    client = connect(settings)
    try:
        snap = collect(client, settings, rq_queue)
        taken = time.monotonic()
        rate, span = snap["items_per_second"], snap["rate_span"]
        if window > 0:
            time.sleep(window)  # the rate needs a second sample, by definition later
            later = collect(client, settings, rq_queue)
            rate, span = _rate(snap, later, time.monotonic() - taken), window
            snap = later
    except redis.RedisError as exc:
        raise explain(exc, settings) from None
    finally:
        client.close()
    snap["items_per_second"] = rate
    snap["window_seconds"] = span
    if as_json:
        sys.stdout.write(json.dumps(snap) + "\n")
    else:
        RichConsole(highlight=False).print(_render(snap, rate, span))


def watch(
    queue: ListQueue = None,
    rq_queue: RqQueue = "pcq-rq",
    redis_url: RedisUrlOption = None,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes.")] = 1.0,
    count: Annotated[
        int | None, typer.Option("--count", help="Stop after N refreshes [default: until Ctrl-C].")
    ] = None,
) -> None:
    """Live view of the queues, refreshed every second; Ctrl-C leaves (exit 0)."""
    if not 0.1 <= interval <= 60:
        raise UsageProblem(f"--interval must be between 0.1 and 60 seconds, got {interval}")
    if count is not None and count < 1:
        raise UsageProblem(f"--count must be >= 1, got {count}")
    import redis

    from pcq.core.redis_common.connection import connect, explain

    settings = _settings(queue, redis_url)
    client = connect(settings)
    rates = RateWindow(WATCH_WINDOW)
    shown = 0
    try:
        with Live(console=RichConsole(highlight=False), auto_refresh=False) as live:
            while count is None or shown < count:
                snap = collect(client, settings, rq_queue)
                acked = _acked(snap)
                rate = None if acked is None else rates.add(snap["at"], acked)
                live.update(_render(snap, rate, WATCH_WINDOW, "pcq watch"), refresh=True)
                shown += 1
                if count is None or shown < count:
                    time.sleep(interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how one leaves a watch: not an error
    except redis.RedisError as exc:
        raise explain(exc, settings) from None
    finally:
        client.close()


def register(app: typer.Typer) -> None:
    """Add ``pcq status`` and ``pcq watch`` to the CLI."""
    app.command("status")(status)
    app.command("watch")(watch)
