"""The producer role of the Redis list: :class:`ListProducer` (open a run, push batches, close it).

A producer *run* (id ``<run>``, items ``<run>:<n>``) is registered (``run:<run>``
hash, the ``open`` and ``runs`` sets), then pushed in batches by one Lua call
each (``push.lua``) on the link's Wire, a batch as one list element (an
envelope: :mod:`pcq.core.redis_list.envelope`): the push, the run's ``produced`` count
and a batch sequence number change together, so a push retried after a lost
reply is not applied twice. The call pushes nothing while the queue is above
the high-water mark (items, or bytes of the queue list as ``MEMORY USAGE``
estimates them): backpressure, :meth:`ListProducer.put` waits. A full Redis
(``maxmemory`` under ``noeviction``) is backpressure as well: Redis refuses
the whole push before it runs (``push.lua`` has no ``allow-oom`` flag), and
``put`` retries it until ``full_timeout``, with a line every 10 s.
:meth:`ListProducer.end_stream` closes the run. While the producer lives, a
heartbeat thread keeps the run's liveness key fresh, so ``consume --drain``
stops waiting for a run whose producer was killed before closing it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import redis

from pcq.core.errors import PcqError, RedisFull
from pcq.core.redis_common.connection import stderr_log
from pcq.core.redis_common.payload import encode_bodies, encode_many, new_run_id
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.envelope import pack
from pcq.core.redis_list.heartbeat import Heartbeat
from pcq.core.redis_list.link import ListLink, Notify
from pcq.core.transport import Item

__all__ = ["PRODUCER_TTL_FACTOR", "BodyRun", "ListProducer", "ListRunProducer"]

T = TypeVar("T")

# A producer's run stays open for `consume --drain` while its liveness key lives:
# this many heartbeat TTLs (30 s by default), longer than a Redis restart takes.
PRODUCER_TTL_FACTOR = 6


class ListProducer:
    """The producer role (a :class:`pcq.core.transport.Producer` of ``Sequence[Item]``).

    Args:
        client: From :func:`pcq.core.redis_common.connection.connect`; the caller closes it.
        settings: Queue name, batch, high-water mark, heartbeat TTL, retries.
        run: This producer's run id (default: a fresh one); registered by
            :meth:`open_run` or the first :meth:`put`.
        log: Sink for retry lines (stderr).
        notify: Sink for events worth a console line (backpressure waits).
        wait: Sleep used between retries and backpressure polls.
        put_timeout: Longest a ``put`` waits for room below the high-water mark.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: RedisSettings,
        *,
        run: str | None = None,
        log: Notify = stderr_log,
        notify: Notify | None = None,
        wait: Callable[[float], object] = time.sleep,
        put_timeout: float | None = 300.0,
    ) -> None:
        self.link = ListLink(client, settings, log=log, wait=wait)
        self.settings = settings
        self.keys = self.link.keys
        self.run = run or new_run_id()
        self.notify = notify or log
        self.put_timeout = put_timeout
        self._wait = wait
        self._opened = False
        self._seq = 0  # batch number: push.lua skips one it has applied
        self._quiet_until = 0.0  # backpressure: no "waiting" line before this time
        self._full_quiet_until = 0.0  # the same for a full Redis
        self._alive: Heartbeat | None = None  # the run's liveness, from open_run to end_stream

    def open_run(self) -> str:
        """Register this producer's run (stream open) and keep it alive; return the run id."""
        run, k, client = self.run, self.keys, self.link.client

        def register() -> None:
            # The liveness key is set in the same MULTI as the open set: a run
            # seen open without it is taken for abandoned by `consume --drain`
            # (drained.lua), which would then stop before the first push.
            with client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(k.run(run), "started_at", repr(time.time()))
                pipe.hset(k.run(run), mapping={"host": socket.gethostname(), "pid": os.getpid()})
                pipe.hsetnx(k.run(run), "produced", 0)
                pipe.set(k.run_alive(run), os.getpid(), px=self._alive_ms())
                pipe.sadd(k.open, run)
                pipe.zadd(k.runs, {run: time.time()}, nx=True)
                pipe.execute()

        self._while_full(lambda: self.link.retry.call(register))
        self._opened = True
        if self._alive is None:
            self._alive = Heartbeat(self.settings.heartbeat_every, self._beat)
            self._alive.start()
        return run

    def _beat(self) -> bool:
        # While this key lives the run counts as open for `consume --drain`; a
        # producer killed without closing its stream lets it expire.
        # beat.lua (allow-oom): a producer waiting on a full Redis is still alive.
        return bool(self.link.scripts.beat([self.keys.run_alive(self.run)],
                                           [os.getpid(), self._alive_ms()]))

    def _alive_ms(self) -> int:
        return int(self.settings.heartbeat_ttl * 1000) * PRODUCER_TTL_FACTOR

    def put(self, items: Sequence[Item]) -> None:
        """Push ``items`` as one batch; wait while the queue is at its high-water mark.

        A full Redis (``maxmemory``) is backpressure too: the push is refused
        whole, and retried until ``settings.full_timeout`` runs out.

        Raises:
            PcqError: the queue stayed above its high-water mark ``put_timeout`` s.
            RedisFull: Redis stayed full ``full_timeout`` s (nothing of the batch pushed).
        """
        if not items:
            return
        self.push(encode_many(items, self.run, self.settings.max_payload_bytes))

    def push(self, raws: list[bytes]) -> None:
        """Push payloads already encoded for this run as one batch (see :meth:`put`)."""
        if not raws:
            return
        if not self._opened:
            self.open_run()
        s, run = self.settings, self.run
        self._seq += 1
        keys = [self.keys.queue, self.keys.run(run), self.keys.queue_extra]
        args: list[bytes | str | int] = [s.high_water, s.high_water_bytes, self._seq, len(raws),
                                         pack(raws), self._seq]  # fmt: skip
        deadline = None if self.put_timeout is None else time.monotonic() + self.put_timeout
        pause = 0.005
        while True:
            status, length = self._while_full(lambda: self.link.eval("push", keys, args))
            if status != 0:
                return
            now = time.monotonic()
            if now >= self._quiet_until:  # one line per 10 s of waiting, not per batch
                self._quiet_until = now + 10.0
                self.notify(f"queue {s.queue} holds {length} items ({self._marks()}): "
                            "producer waiting")  # fmt: skip
            if deadline is not None and now > deadline:
                raise PcqError(
                    f"queue {s.queue} stayed above its high-water mark for "
                    f"{self.put_timeout:g}s: are any consumers running?"
                )
            self._wait(pause)
            # Short pauses: the queue holds thousands of items, so consumers never
            # run dry while we wait, and room is used as soon as it appears.
            pause = min(0.05, pause * 2)

    def _marks(self) -> str:
        s = self.settings
        marks = [f"high-water {s.high_water}"] if s.high_water else []
        marks += [f"high-water {s.high_water_bytes} bytes"] if s.high_water_bytes else []
        return ", ".join(marks)

    def _while_full(self, step: Callable[[], T]) -> T:
        """Return ``step()``, waiting while Redis is full (``RedisFull``), up to ``full_timeout``.

        Prints a line when the wait starts and every 10 s; the step must be
        safe to repeat (a push refused for OOM applied nothing).
        """
        limit, started, pause, full = self.settings.full_timeout, time.monotonic(), 0.01, False
        while True:
            try:
                result = step()
            except RedisFull:
                full = True
                waited = time.monotonic() - started
                if waited >= limit:
                    raise RedisFull(
                        f"redis at {self.settings.where} stayed full (maxmemory) for "
                        f"{limit:g}s; nothing of the refused batch was pushed. Are consumers "
                        "running? (PCQ_FULL_TIMEOUT / --full-timeout)"
                    ) from None
                if time.monotonic() >= self._full_quiet_until:  # a line per 10 s, not per batch
                    self._full_quiet_until = time.monotonic() + 10.0
                    self.notify(f"redis at {self.settings.where} is full (maxmemory): producer "
                                f"waiting for consumers to free memory ({waited:.0f}s of "
                                f"{limit:g}s)")  # fmt: skip
                self._wait(pause)
                pause = min(0.05, pause * 2)
                continue
            if full and time.monotonic() - started >= 1.0:  # (not after a connection retry)
                self.notify(f"redis at {self.settings.where} has room again: producer resumes "
                            f"after {time.monotonic() - started:.1f}s")  # fmt: skip
            return result

    def end_stream(self) -> None:
        """Close this producer's stream (``consume --drain`` waits for that)."""
        if not self._opened:
            return
        run, k = self.run, self.keys

        def close() -> None:  # close.lua (allow-oom): also on a full Redis
            self.link.scripts.close([k.run(run), k.open, k.run_alive(run)], [run, repr(time.time())])

        self._stop_beat()
        self.link.retry.call(close)

    def close(self) -> None:
        """Stop the run's liveness thread (if still going) and give the Wire's connection back.

        Does not end the stream: a producer that stops without :meth:`end_stream`
        leaves its run open until the liveness key expires.
        """
        self._stop_beat()
        self.link.close()

    def _stop_beat(self) -> None:
        if self._alive is not None:
            self._alive.stop()
            self._alive = None


class BodyRun:
    """Items ``<run>:<first>`` .. of one run, made at one instant: the bodies, a stamp.

    The batch type of :class:`ListRunProducer`, which encodes it without
    building an :class:`Item` per item (:func:`~pcq.core.redis_common.payload.encode_bodies`).
    Iterating it still gives its items, built on demand (the ledger reads
    their ids).
    """

    __slots__ = ("bodies", "first", "produced_at", "run")

    def __init__(self, run: str, first: int, bodies: list[str], produced_at: float) -> None:
        self.run, self.first, self.bodies, self.produced_at = run, first, bodies, produced_at

    def __len__(self) -> int:
        return len(self.bodies)

    def __iter__(self) -> Iterator[Item]:
        run, at = self.run, self.produced_at
        return (Item(f"{run}:{n}", body, at) for n, body in enumerate(self.bodies, self.first))


class ListRunProducer:
    """The producer role (a :class:`pcq.core.transport.Producer` of :class:`BodyRun`).

    ``pcq produce``'s fast path: a :class:`ListProducer` fed bodies instead of
    items (~0.3 us of CPU an item to encode against ~1.2; docs/benchmarks.md,
    "Redis list"). Every batch must be of the inner producer's run.
    """

    def __init__(self, inner: ListProducer) -> None:
        self.inner = inner

    def put(self, batch: BodyRun) -> None:
        """Encode and push ``batch`` as one envelope (see :meth:`ListProducer.put`)."""
        inner = self.inner
        if batch.run != inner.run:
            raise ValueError(f"batch of run {batch.run!r} given to run {inner.run!r}'s producer")
        cap = inner.settings.max_payload_bytes
        inner.push(encode_bodies(batch.run, batch.first, batch.bodies, batch.produced_at, cap))

    def end_stream(self) -> None:
        """Close the run's stream (:meth:`ListProducer.end_stream`)."""
        self.inner.end_stream()
