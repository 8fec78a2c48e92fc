"""Producer and consumer processes for the Redis reliability tests (a test driver).

``python tests/chaos_redis.py consume LEDGER_DIR [--drain]`` runs
:func:`pcq.consumer.run.run_consumer` -- the code behind ``pcq consume`` -- with a
handler that appends ``id, consumer id, delivery`` to the independent ledger
(``pcq.core.ledger``, checked by ``tests/audit.py``) before the transport's ack. SIGTERM stops it as it stops
``pcq consume`` (exit 0).

``python tests/chaos_redis.py produce LEDGER_DIR --items N`` runs
:func:`pcq.core.pattern.produce` over a :class:`pcq.core.redis_list.producer.ListProducer` and appends
each batch's ids to the ledger once Redis confirmed the push
(:class:`pcq.core.ledger.LedgerProducer`; up to ``WINDOW`` pushes travel
unconfirmed). It writes its run id to ``LEDGER_DIR/run`` first and does not wait for
the tally (the test reads it).

Settings come from the environment as for ``pcq``: ``REDIS_URL``,
``PCQ_QUEUE``, ``PCQ_BATCH``, ``PCQ_HEARTBEAT_TTL``, ``PCQ_HIGH_WATER`` ...
Work per item is a sleep of ``--delay`` seconds while ``LEDGER_DIR/slow``
exists (see ``tests/chaos_local.py``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit import HANDLED, PRODUCED, Audit

from pcq.consumer.run import run_consumer
from pcq.core.console import Console
from pcq.core.ledger import LedgerProducer
from pcq.core.pattern import produce
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import consumer_id
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item


def _halt_on_sigterm() -> threading.Event:
    halt = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: halt.set())
    return halt


def consume_main(ledger_dir: Path, drain: bool, delay: float) -> int:
    """A ledger-keeping consumer (exit 0 when drained or on SIGTERM)."""
    settings = RedisSettings.from_env()
    halt = _halt_on_sigterm()
    out = Audit(ledger_dir).writer(HANDLED)
    slow = ledger_dir / "slow"
    me = consumer_id()

    def handle(item: Item) -> None:
        if delay and slow.exists():
            time.sleep(delay)
        out.add(item.id, me, item.deliveries)

    try:
        run_consumer(settings, Console(quiet=True), drain=drain, handler=handle, stop=halt)
    finally:
        out.close()
    return 0


def produce_main(ledger_dir: Path, items: int) -> int:
    """A producer whose acknowledged ids go to the ledger."""
    settings = RedisSettings.from_env()
    halt = _halt_on_sigterm()
    client = connect(settings)
    out = Audit(ledger_dir).writer(PRODUCED)
    try:
        queue = ListProducer(client, settings, put_timeout=None)
        run = queue.open_run()
        (ledger_dir / "run").write_text(run)
        texts = (f"item #{n}" for n in range(items))
        made = (Item(f"{run}:{n}", body, time.time()) for n, body in enumerate(texts))
        recording = LedgerProducer(queue, out)
        produce(recording, made, Console(quiet=True), batch=settings.batch, stop=halt.is_set)
    finally:
        out.close()
        client.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``consume`` or ``produce`` (see the module docstring)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("role", choices=["consume", "produce"])
    ap.add_argument("ledger_dir", type=Path)
    ap.add_argument("--items", type=int, default=0)
    ap.add_argument("--drain", action="store_true")
    ap.add_argument("--delay", type=float, default=0.0)
    args = ap.parse_args(argv)
    if args.role == "consume":
        return consume_main(args.ledger_dir, args.drain, args.delay)
    return produce_main(args.ledger_dir, args.items)


if __name__ == "__main__":
    sys.exit(main())
