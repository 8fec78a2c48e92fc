"""Building blocks of :class:`pcq.core.redis_list.consumer.RedisQueue`: Lua scripts, its own connection,
ack buffer, heartbeat."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import hiredis
import redis
from redis.connection import Connection
from redis.exceptions import NoScriptError, RedisError, ResponseError

from pcq.core.errors import PcqError
from pcq.core.redis_common.connection import RETRYABLE

__all__ = ["AckBuffer", "AckHistory", "Heartbeat", "Scripts", "Wire"]

T = TypeVar("T")
_LUA_DIR = Path(__file__).with_name("lua")
_NAMES = ("push", "claim", "retry", "dead", "release", "reap", "drained")
_pack = hiredis.pack_command


@cache
def _lua(name: str) -> str:
    return (_LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")


class Wire:
    """One connection of the client's pool, kept for the hot path of one thread.

    ``execute`` sends commands in one write and reads their replies, without
    redis-py's per-command machinery (pool checkout, retry wrapper, metrics
    hooks): that machinery costs more client CPU than the round trip itself
    when items go one by one. Connection trouble is retried by the client's own
    ``Retry`` (as redis-py would), then raised for :class:`pcq.core.redis_common.connection.Retrier`.
    Only ever used by one thread (the consumer's or the producer's main thread).
    """

    def __init__(self, client: redis.Redis) -> None:
        self._pool = client.connection_pool
        self._retry = client.get_retry()
        self._conn: Connection | None = None

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` pipelined; return their replies.

        Raises:
            ResponseError: the first error reply (after all replies were read).
        """
        try:
            return self._once(commands)
        except RETRYABLE:
            if self._retry is None:
                raise
            # The same commands again: every script we send is safe to repeat.
            return self._retry.call_with_retry(lambda: self._once(commands), lambda _: None)

    def _once(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._checkout()
        replies: list[Any] = []
        error: ResponseError | None = None
        try:
            # hiredis packs directly: redis-py's packer first walks every
            # argument in Python (100 payloads per push, 100 ids per ack).
            conn.send_packed_command([b"".join([_pack(tuple(c)) for c in commands])])
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except ResponseError as exc:  # NOSCRIPT, WRONGTYPE...: the reply is read
                    replies.append(exc)
                    error = error or exc
        except BaseException:
            conn.disconnect()  # half a conversation: start the next one afresh
            raise
        if error is not None:
            raise error
        return replies

    def _checkout(self) -> Connection:
        try:
            return self._pool.get_connection()
        except TypeError:  # an older redis-py wants a command name (newer ones warn if given)
            return self._pool.get_connection("EVALSHA")  # type: ignore[call-arg,unused-ignore]

    def close(self) -> None:
        """Hand the connection back to the pool."""
        if self._conn is not None:
            self._pool.release(self._conn)
            self._conn = None


class Scripts:
    """The Lua scripts of ``core/lua``, registered once per client.

    Called directly they use EVALSHA and reload themselves on NOSCRIPT (a
    restarted Redis has forgotten them). On a :class:`Wire`, :meth:`command`
    gives a bare EVALSHA -- redis-py's own pipeline support would add a
    ``SCRIPT EXISTS`` round trip to every execute -- and :meth:`reloading`
    loads them all and runs the commands again when Redis answers NOSCRIPT.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._scripts = {name: client.register_script(_lua(name)) for name in _NAMES}
        self.push = self._scripts["push"]
        self.claim = self._scripts["claim"]
        self.retry = self._scripts["retry"]
        self.dead = self._scripts["dead"]
        self.release = self._scripts["release"]
        self.reap = self._scripts["reap"]
        self.drained = self._scripts["drained"]

    def command(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple[Any, ...]:
        """The EVALSHA command of script ``name``, for :meth:`Wire.execute`."""
        return ("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)

    def reloading(self, run: Callable[[], T]) -> T:
        """Return ``run()``; on NOSCRIPT load every script and run it once more.

        Safe to repeat: the claim script ignores a call number it already applied.
        """
        try:
            return run()
        except NoScriptError:
            for name in _NAMES:
                self._client.script_load(_lua(name))
            return run()


class AckHistory:
    """This consumer's acknowledgements over the last ``span`` seconds.

    Sampled at every heartbeat and carried in the heartbeat's value, so
    ``pcq status`` can report items/s over the last 10 s in one read, without
    sampling twice. ``count`` is only written by the consumer's thread.
    """

    def __init__(self, span: float = 10.0) -> None:
        self.span = span
        self.count = 0
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, now: float) -> dict[str, Any]:
        """Record ``count`` at ``now``; return ``{"acked", "since": [time, acked]}``.

        ``since`` is the oldest sample at most ``span`` seconds old (the
        current one when none is), so the rate spans up to ``span`` seconds.
        """
        samples = self._samples
        samples.append((now, self.count))
        while len(samples) > 1 and samples[0][0] < now - self.span:
            samples.popleft()
        first = samples[0]
        return {"acked": self.count, "since": [round(first[0], 3), first[1]]}


class AckBuffer:
    """Acknowledgements not yet sent: ids and payloads, in acknowledgement order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.raws: list[bytes] = []
        self.since = 0.0

    def __bool__(self) -> bool:
        return bool(self.ids)

    def add(self, item_id: str, raw: bytes, now: float) -> None:
        """Buffer the acknowledgement of ``item_id`` (payload ``raw``) at ``now`` (monotonic)."""
        if not self.ids:
            self.since = now
        self.ids.append(item_id)
        self.raws.append(raw)

    def args(self, covers_all: bool) -> list[Any]:
        """The claim script's ack arguments (see ``claim.lua``).

        Args:
            covers_all: the consumer holds nothing but these items, so the
                script may drop the whole processing list instead of removing
                payloads one by one (and they need not be sent).
        """
        out: list[Any] = ["all" if covers_all else "some"]
        out += self.by_run()
        if not covers_all:
            out += self.raws
        return out

    def by_run(self) -> list[Any]:
        """``[number of runs, run, its ids joined by ',', ...]`` (ids never contain ',')."""
        ids = self.ids
        if not ids:
            return [0]
        run = ids[0].rpartition(":")[0]
        joined = ",".join(ids)
        # Usually one run: every id starts with "<run>:" exactly when ",<run>:"
        # occurs once per id in ",<joined>" (a run has no ':', an id no ',').
        if ("," + joined).count(f",{run}:") == len(ids):
            return [1, run, joined]
        groups: dict[str, list[str]] = {}
        for item_id in ids:
            groups.setdefault(item_id.rpartition(":")[0], []).append(item_id)
        out: list[Any] = [len(groups)]
        for name, members in groups.items():
            out += (name, ",".join(members))
        return out

    def clear(self) -> None:
        self.ids = []
        self.raws = []


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``every`` seconds (and ``reap`` every ``reap_every``)
    from a background thread, so a handler that sleeps does not stop it.

    Consumers beat (heartbeat key + registration) and reap; producers only beat
    (their run's liveness key).
    """

    def __init__(
        self,
        every: float,
        beat: Callable[[], object],
        reap: Callable[[], object] | None = None,
        reap_every: float = 0.0,
    ) -> None:
        super().__init__(name="pcq-heartbeat", daemon=True)
        self.every = every
        self.beat = beat
        self.reap = reap
        self.reap_every = reap_every
        self._halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        next_reap = time.monotonic()
        while not self._halt.wait(self.every):
            try:
                self.beat()
                if self.reap is not None and time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self.reap_every
                    self.reap()
            except (RedisError, PcqError):
                # Outages are reported by the main thread's retries; keep beating.
                self.errors += 1

    def stop(self) -> None:
        """Stop and join (bounded: one beat plus one redis-py retry cycle)."""
        self._halt.set()
        self.join(timeout=max(2.0, self.every * 2))
