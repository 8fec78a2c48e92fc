"""The container side of ``pcq compare --docker`` (``python -m pcq.core.compare.docker_side``).

Inside the compose project the host cannot reach Redis (its network is
internal), so both roles run in containers of the pcq image:

* ``consume --work SPEC`` -- a consumer container: waits until a run is open,
  drains the queue with the workload's handler (:func:`pcq.core.redis_list.serve.serve`, ``drain=True``)
  and, on its way out, pushes its ``(id, produced_at, handled_at)`` stamps to
  ``pcq:{Q}:compare:stamps`` in one call (nothing extra per item).
* ``produce --items N ...`` -- a one-off producer container: opens the run,
  waits until ``--consumers`` consumers have registered, pushes the items, waits
  for the tally and for every consumer's stamps, and prints one JSON object
  ``{"tally": ..., "stamps": [[produced_at, handled_at], ...]}`` on stdout.

Settings come from the environment (``REDIS_URL``, ``PCQ_QUEUE``, ``PCQ_BATCH``),
as for ``pcq consume``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from pcq.core.compare.workload import make_body, stamping
from pcq.core.console import QuietConsole
from pcq.core.pattern import produce
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import new_run_id
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import consumer_id
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.serve import serve
from pcq.core.redis_list.tally import read_tally, wait_for_tally
from pcq.core.transport import Item

__all__ = ["main", "stamps_key"]

WAIT_TIMEOUT = 120.0


def stamps_key(queue: str) -> str:
    """Where consumer containers leave their stamps (one JSON per consumer)."""
    return f"{Keys(queue).prefix}:compare:stamps"


def _wait(what: str, ready: Any, timeout: float = WAIT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"pcq: timed out waiting for {what}")
        time.sleep(0.02)


def consume(settings: RedisSettings, spec: str) -> None:
    """A consumer container: drain one run, then hand in the stamps."""
    client = connect(settings)
    keys = Keys(settings.queue)
    # drain=True ends when no stream is open: wait for the producer's run first.
    _wait("a producer run", lambda: client.zcard(keys.runs) > 0)
    handle, stamps = stamping(spec)
    try:
        serve(settings, handle, QuietConsole(), drain=True, poll=0.1)
    finally:
        record = json.dumps({"consumer": consumer_id(), "stamps": stamps})
        client.rpush(stamps_key(settings.queue), record)
        client.close()


def produce_run(settings: RedisSettings, items: int, size: int, consumers: int, timeout: float) -> None:
    """The producer container: one run, then its tally and stamps as JSON on stdout."""
    client = connect(settings)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings, run=new_run_id())
    run = producer.open_run()
    _wait(f"{consumers} consumers", lambda: client.scard(keys.consumers) >= consumers)
    t0 = time.monotonic()
    made = (Item(f"{run}:{n}", make_body(n, size), time.time()) for n in range(items))
    produce(producer, made, QuietConsole(), batch=settings.batch, stop=threading.Event().is_set)
    producer.close()
    tally = wait_for_tally(lambda: read_tally(client, keys, run), timeout=timeout)
    _wait("the consumers' stamps", lambda: client.llen(stamps_key(settings.queue)) >= consumers)
    tally["wall_seconds"] = round(time.monotonic() - t0, 3)
    first: dict[str, tuple[float, float]] = {}
    for raw in client.lrange(stamps_key(settings.queue), 0, -1):
        for item_id, produced_at, handled_at in json.loads(raw)["stamps"]:
            if item_id not in first or handled_at < first[item_id][1]:
                first[item_id] = (produced_at, handled_at)
    client.close()
    json.dump({"tally": tally, "stamps": list(first.values())}, sys.stdout)
    sys.stdout.write("\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``consume --work SPEC`` or ``produce --items N ...``."""
    parser = argparse.ArgumentParser(prog="python -m pcq.core.compare.docker_side")
    sub = parser.add_subparsers(dest="role", required=True)
    con = sub.add_parser("consume")
    con.add_argument("--work", default="noop")
    pro = sub.add_parser("produce")
    pro.add_argument("--items", type=int, required=True)
    pro.add_argument("--payload-bytes", type=int, default=64)
    pro.add_argument("--consumers", type=int, required=True)
    pro.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args(argv)
    settings = RedisSettings.from_env()
    if args.role == "consume":
        consume(settings, args.work)
    else:
        produce_run(settings, args.items, args.payload_bytes, args.consumers, args.timeout)


if __name__ == "__main__":
    main()
