r"""A producer's pushes in flight: :class:`Pushes` keeps up to ``WINDOW`` unconfirmed.

A push is confirmed once its reply has been read and says Redis applied it
(status 1, or 2: applied before, a retry). :meth:`Pushes.send` writes a push
(``push.lua``) on the link's Wire without waiting for its reply, and reads
the oldest reply only when ``WINDOW`` pushes are unconfirmed or it is
``CONFIRM_AFTER`` old, so the round trip overlaps the producer's work on the
next batches (the run's first push alone is confirmed at once: a fresh Redis
answers it NOSCRIPT). Every push carries its
sequence number and a *floor*: the oldest unconfirmed sequence number when it
was built. ``push.lua`` applies a push only right after its predecessor
(``seq > floor`` and the run's last applied ``seq`` is not ``seq - 1``: status
3, a gap, nothing applied). One refused push therefore refuses everything
behind it, and the window is sent again from the refused one::

    producer                      Redis (run's last applied seq: 4)
    send 5 (floor 5)  -------->   5 applied                    -> {1}  last 5
    send 6 (floor 5)  -------->   6 over the high-water mark   -> {0}
    send 7 (floor 5)  -------->   7: 7 > floor, last 5 != 6    -> {3} gap
    read 5: confirmed, done(5)
    read 6: refused -> read 7's reply (discarded), then recover:
      pause, send 6 (floor 6) alone  -->   6 applied               -> {1}
      read 6: confirmed, done(6)
      send 7 (floor 7)  -------------->   7 applied               -> {1}
      read 7: confirmed, done(7)

(After a lost connection or NOSCRIPT the recovery sends every unconfirmed
push at once, with the oldest as floor; after a refusal for room or memory,
the oldest alone until it goes in.)

Why exactly once: the run hash keeps the last applied sequence number, and a
push at or below it is not applied again (status 2, confirmed): resending
after a lost reply, a dropped connection or NOSCRIPT cannot duplicate. Why in
order: a push above the floor applies only right after its predecessor, so a
refused or lost push cannot be overtaken by the ones sent behind it; a push is
only resent from the oldest unconfirmed on, in order. The floor itself is
never a gap: after a Redis restart that forgot confirmed pushes (AOF
``everysec``), the oldest unconfirmed push must still go in, as it did when
pushes went one at a time, and the recovery rebuilds every command with the
current floor (a stale one would be refused for ever after such a rollback).

Recovering (:meth:`Pushes._recover`) is synchronous and goes through the
link's retrier: connection trouble is waited out, NOSCRIPT reloads the
scripts, a full Redis (``OOM``) and a queue above its high-water mark are
backpressure (:class:`Backpressure`: a line every 10 s, a deadline, short
pauses). Until a push is confirmed its ``done`` callback is not called, so a
ledger fed by it (``pcq produce --ledger``) lists only what Redis confirmed;
a producer killed meanwhile leaves at most ``WINDOW`` pushes applied but
unconfirmed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

import redis
from redis.exceptions import OutOfMemoryError, ResponseError

from pcq.core.errors import PcqError, RedisFull
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.link import ListLink, Notify

__all__ = ["CONFIRM_AFTER", "WINDOW", "Backpressure", "Pushes"]

T = TypeVar("T")

# Pushes unconfirmed at most. benchmarks/bench_pushes.py (the producer alone as
# `pcq produce` runs it, no consumer, a throwaway redis-server; 2-core machine,
# load average < 0.6; medians of 5 rounds of 20,000 unbatched pushes and of 3
# rounds of 2,000 pushes of 100 items), the producer's CPU per push in us:
#
#   window          1      2      4      8     16
#   unbatched    58.6   31.0   18.3   15.5   15.0   (wall 117 -> 43, 19, 15.6, 15.2)
#   batch 100    99.9   65.7   46.5   45.8   46.3
#
# (Window 1 is the old synchronous push, its round trip overlapping only the
# next batch's encoding.) 8 gets all of the gain; 16 adds nothing but limbo
# -- batches a SIGKILLed producer leaves applied and unconfirmed -- and Redis
# memory, which counts a client's unread commands.
WINDOW = 8
# A push unconfirmed this long (s) is confirmed before the next is sent: a
# producer that pushes now and then learns of a refusal (a queue at its mark,
# NOSCRIPT after a Redis restart) at its next push, not WINDOW pushes later.
# Far above a round trip (~0.1-0.3 ms here), so the read finds its reply there.
CONFIRM_AFTER = 0.002

_CONFIRMED = (1, 2)  # push.lua: pushed now, or pushed before (a retry)


class Backpressure:
    """How a producer waits: for room below the high-water mark, and on a full Redis.

    Each wait prints a line when it starts and then every 10 s (not one per
    batch), pauses briefly (the queue holds thousands of items, so consumers
    never run dry meanwhile, and room is used as soon as it appears) and
    gives up at its deadline.

    Args:
        settings: The marks, ``full_timeout`` and the server's ``host:port``.
        notify: Sink for the waiting lines.
        wait: Sleep between polls.
        put_timeout: Longest wait for room below the high-water mark (None: for ever).
    """

    def __init__(self, settings: RedisSettings, notify: Notify, wait: Callable[[float], object],
                 put_timeout: float | None) -> None:  # fmt: skip
        self.settings = settings
        self.notify = notify
        self.put_timeout = put_timeout
        self._wait = wait
        self._room_quiet_until = 0.0  # no "waiting" line before this time
        self._full_quiet_until = 0.0  # the same for a full Redis
        self._room_since: float | None = None  # when the wait for room began
        self._room_pause = 0.005

    def no_room(self, length: int) -> None:
        """The oldest push was refused (queue at its mark, ``length`` items): pause once.

        Raises:
            PcqError: no room for ``put_timeout`` s since :meth:`progress` last ran.
        """
        s, now = self.settings, time.monotonic()
        if self._room_since is None:
            self._room_since = now
        if now >= self._room_quiet_until:
            self._room_quiet_until = now + 10.0
            self.notify(f"queue {s.queue} holds {length} items ({self._marks()}): "
                        "producer waiting")  # fmt: skip
        if self.put_timeout is not None and now - self._room_since > self.put_timeout:
            raise PcqError(
                f"queue {s.queue} stayed above its high-water mark for "
                f"{self.put_timeout:g}s: are any consumers running?"
            )
        self._wait(self._room_pause)
        self._room_pause = min(0.05, self._room_pause * 2)

    def progress(self) -> None:
        """A push went in: the next refusal starts a new wait for room."""
        self._room_since, self._room_pause = None, 0.005

    def _marks(self) -> str:
        s = self.settings
        marks = [f"high-water {s.high_water}"] if s.high_water else []
        marks += [f"high-water {s.high_water_bytes} bytes"] if s.high_water_bytes else []
        return ", ".join(marks)

    def while_full(self, step: Callable[[], T]) -> T:
        """Return ``step()``, waiting while Redis is full (``RedisFull``), up to ``full_timeout``.

        Prints a line when the wait starts and every 10 s; the step must be
        safe to repeat (a push refused for OOM applied nothing).
        """
        limit, started, pause, full = self.settings.full_timeout, time.monotonic(), 0.01, False
        where = self.settings.where
        while True:
            try:
                result = step()
            except RedisFull:
                full = True
                waited = time.monotonic() - started
                if waited >= limit:
                    raise RedisFull(
                        f"redis at {where} stayed full (maxmemory) for {limit:g}s; nothing of "
                        "the refused batches was pushed. Are consumers running? "
                        "(PCQ_FULL_TIMEOUT / --full-timeout)"
                    ) from None
                if time.monotonic() >= self._full_quiet_until:  # a line per 10 s, not per batch
                    self._full_quiet_until = time.monotonic() + 10.0
                    self.notify(f"redis at {where} is full (maxmemory): producer waiting for "
                                f"consumers to free memory ({waited:.0f}s of {limit:g}s)")  # fmt: skip
                self._wait(pause)
                pause = min(0.05, pause * 2)
                continue
            if full and time.monotonic() - started >= 1.0:  # (not after a connection retry)
                self.notify(f"redis at {where} has room again: producer resumes "
                            f"after {time.monotonic() - started:.1f}s")  # fmt: skip
            return result


class _Push(NamedTuple):
    seq: int
    items: int
    envelope: bytes
    done: Callable[[], object] | None
    sent: float  # monotonic time of the first send


class Pushes:
    """One producer's pushes of one run, up to ``WINDOW`` in flight on the link's Wire.

    Only ever used by one thread (the producer's). The Wire carries nothing
    else while pushes are unconfirmed: their replies are read in order.

    Args:
        link: The producer's link (its Wire, scripts, retrier, keys).
        run: The run the pushes count in.
        backpressure: How to wait for room, and on a full Redis.
    """

    def __init__(self, link: ListLink, run: str, backpressure: Backpressure) -> None:
        self.link = link
        self.wire = link.wire
        self.backpressure = backpressure
        s, k = link.settings, link.keys
        self._keys = [k.queue, k.run(run), k.queue_extra]
        self._marks = (s.high_water, s.high_water_bytes)
        self._pending: deque[_Push] = deque()  # unconfirmed, oldest first
        self._probing = False  # recovering: resend only the oldest, refused last time
        self._first = True  # the run's first push is confirmed before send returns

    @property
    def unconfirmed(self) -> int:
        """Pushes sent whose confirmation has not been read yet."""
        return len(self._pending)

    def send(self, seq: int, items: int, envelope: bytes,
             done: Callable[[], object] | None = None) -> None:  # fmt: skip
        """Send push ``seq`` (``items`` items in ``envelope``); ``done()`` once it is confirmed.

        Waits first for the oldest confirmation while ``WINDOW`` are
        unconfirmed (and through backpressure, if it was refused).

        Raises:
            PcqError: no room below the high-water mark for ``put_timeout`` s.
            RedisFull: Redis stayed full ``full_timeout`` s.
        """
        pending, now = self._pending, time.monotonic()
        while pending and (len(pending) >= WINDOW or now - pending[0].sent >= CONFIRM_AFTER):
            self._confirm_oldest()
        push = _Push(seq, items, envelope, done, now)
        pending.append(push)
        try:
            self.wire.send([self._command(push, pending[0].seq)])
        except redis.RedisError:
            self._recover()
        if self._first:
            # A fresh Redis answers the run's first push with NOSCRIPT: find out
            # now, not WINDOW pushes later (at 20 batches/s, 0.4 s late).
            self._first = False
            self.flush()

    def flush(self) -> None:
        """Wait until every push sent is confirmed (see :meth:`send` for what it raises)."""
        while self._pending:
            self._confirm_oldest()

    def drop(self) -> None:
        """Forget the unconfirmed pushes and their unread replies (the connection goes).

        For a producer that stops without waiting: what it had in flight may or
        may not be in Redis, and is never confirmed.
        """
        if self._pending:
            self._pending.clear()
            self.wire.drop()

    def _command(self, push: _Push, floor: int) -> tuple[Any, ...]:
        args = (*self._marks, push.seq, push.items, push.envelope, floor)
        return self.link.scripts.command("push", self._keys, args)

    def _confirm_oldest(self) -> None:
        """Read the oldest reply: confirm that push, or recover from its refusal."""
        try:
            status, length = self.wire.receive(1)[0]
        except ResponseError:  # NOSCRIPT, OOM: this reply is read, the others are not
            status = length = None
        except redis.RedisError:  # the Wire dropped its connection: no reply left to read
            self.wire.drop()
            self._recover()
            return
        if status in _CONFIRMED:
            self._confirm()
            return
        self._discard_rest()
        self._recover(no_room=int(length) if status == 0 else None)

    def _confirm(self) -> None:
        push = self._pending.popleft()  # first: a failing callback is not called twice
        if push.done is not None:
            push.done()

    def _discard_rest(self) -> None:
        """Read the replies behind a refused push (gaps, refused too): the Wire stays in step."""
        behind = len(self._pending) - 1
        if behind:
            try:
                self.wire.receive(behind)
            except ResponseError:
                pass  # every reply was read
            except redis.RedisError:
                self.wire.drop()

    def _recover(self, no_room: int | None = None) -> None:
        """Send every unconfirmed push again, in order, until all are confirmed.

        Synchronous, through the link's retrier (outages, NOSCRIPT) and the
        backpressure waits; ``no_room``: the oldest was refused for room, at
        that queue length (so the first resend comes after a pause, and
        alone). If it gives up, the unconfirmed pushes are dropped: a later
        flush does not wait for them again.
        """
        link = self.link
        # After trouble the first round sends them all (a lost connection costs
        # one round trip); after a refusal for room, the oldest alone.
        self._probing = no_room is not None
        try:
            if no_room is not None:
                self.backpressure.no_room(no_room)
            while self._pending:
                oldest = self._pending[0].seq
                length = self.backpressure.while_full(
                    lambda: link.retry.call(link.scripts.reloading, self._resend))
                if self._pending and self._pending[0].seq == oldest and length is not None:
                    self.backpressure.no_room(length)
                else:
                    self.backpressure.progress()
        except BaseException:
            self.drop()
            raise

    def _resend(self) -> int | None:
        """One round trip: the unconfirmed pushes, floor the oldest; confirm what went in.

        All of them, or only the oldest while it is refused for room or memory
        (Redis counts a client's unread commands in its memory: a window of
        big batches resent every 50 ms would keep it fuller than one push does).

        Returns:
            The queue length if the oldest push sent was refused for room, else
            None (everything sent was confirmed).

        Raises:
            ResponseError: that of the oldest push sent, if refused with one
                (NOSCRIPT, OOM...).
        """
        floor = self._pending[0].seq
        sending = [self._pending[0]] if self._probing else list(self._pending)
        commands = [self._command(push, floor) for push in sending]
        self.wire.send(commands)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(self.wire.receive(1)[0])
            except ResponseError as exc:  # read; keep reading the others
                replies.append(exc)
        for reply in replies:
            if isinstance(reply, ResponseError):
                self._probing = isinstance(reply, OutOfMemoryError)
                raise reply
            if reply[0] not in _CONFIRMED:
                self._probing = True
                return int(reply[1])
            self._probing = False
            self._confirm()
        return None
