"""The producer half of :class:`pcq.core.redis_list.consumer.RedisQueue` (open a run, push, close)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from pcq.core.errors import PcqError
from pcq.core.redis_common.connection import Retrier
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import encode_many, new_run_id
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.scripts import Heartbeat, Scripts, Wire
from pcq.core.transport import Item

__all__ = ["PRODUCER_TTL_FACTOR", "ProducerSide"]

# A producer's run stays open for `consume --drain` while its liveness key lives:
# this many heartbeat TTLs (30 s by default), longer than a Redis restart takes.
PRODUCER_TTL_FACTOR = 6


class ProducerSide:
    """Producer methods; :class:`pcq.core.redis_list.consumer.RedisQueue` sets the attributes."""

    client: redis.Redis
    settings: RedisSettings
    keys: Keys
    run: str | None
    notify: Callable[[str], None]
    put_timeout: float | None
    _wait: Callable[[float], object]
    _retry: Retrier
    _scripts: Scripts
    _wire: Wire
    _seq: int
    _quiet_until: float
    _pheart: Heartbeat | None

    def open_run(self) -> str:
        """Register this producer's run (stream open); return the run id."""
        if self.run is None:
            self.run = new_run_id()
        run, k = self.run, self.keys

        def register() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(k.run(run), "started_at", repr(time.time()))
                pipe.hset(k.run(run), mapping={"host": socket.gethostname(), "pid": os.getpid()})
                pipe.hsetnx(k.run(run), "produced", 0)
                pipe.sadd(k.open, run)
                pipe.zadd(k.runs, {run: time.time()}, nx=True)
                pipe.execute()

        self._retry.call(register)
        self._retry.call(self._producer_beat)
        if self._pheart is None:
            self._pheart = Heartbeat(self.settings.heartbeat_every, self._producer_beat)
            self._pheart.start()
        return run

    def _producer_beat(self) -> None:
        # While this key lives the run counts as open for `consume --drain`; a
        # producer killed without closing its stream lets it expire.
        assert self.run is not None
        ttl = int(self.settings.heartbeat_ttl * 1000) * PRODUCER_TTL_FACTOR
        self.client.set(self.keys.run_alive(self.run), os.getpid(), px=ttl)

    def put(self, items: Sequence[Item]) -> None:
        """Push ``items`` as one batch; wait while the queue is at its high-water mark."""
        if not items:
            return
        run = self.run if self.run is not None else self.open_run()
        raws = encode_many(items, run, self.settings.max_payload_bytes)
        self._seq += 1
        keys = [self.keys.queue, self.keys.run(run)]
        args: list[bytes | str | int] = [self.settings.high_water, self._seq, *raws]
        deadline = None if self.put_timeout is None else time.monotonic() + self.put_timeout
        pause = 0.005
        while True:
            status, length = self._eval("push", keys, args)
            if status != 0:
                return
            now = time.monotonic()
            if now >= self._quiet_until:  # one line per 10 s of waiting, not per batch
                self._quiet_until = now + 10.0
                self.notify(
                    f"queue {self.settings.queue} holds {length} items "
                    f"(high-water {self.settings.high_water}): producer waiting"
                )
            if deadline is not None and now > deadline:
                raise PcqError(
                    f"queue {self.settings.queue} stayed above its high-water mark for "
                    f"{self.put_timeout:g}s: are any consumers running?"
                )
            self._wait(pause)
            # Short pauses: the queue holds thousands of items, so consumers never
            # run dry while we wait, and room is used as soon as it appears.
            pause = min(0.05, pause * 2)

    def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` on this object's own connection, retried through outages."""
        command = self._scripts.command(name, keys, args)
        return self._retry.call(self._scripts.reloading, lambda: self._wire.execute([command])[0])

    def end_stream(self) -> None:
        """Close this producer's stream (``consume --drain`` waits for that)."""
        if self.run is None:
            return
        run, k = self.run, self.keys

        def close() -> None:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(k.run(run), "closed_at", repr(time.time()))
                pipe.srem(k.open, run)
                pipe.delete(k.run_alive(run))
                pipe.execute()

        self._stop_producer_beat()
        self._retry.call(close)

    def _stop_producer_beat(self) -> None:
        if self._pheart is not None:
            self._pheart.stop()
            self._pheart = None

