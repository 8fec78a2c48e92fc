"""The parent of a local run: starts, watches, repairs and stops every child.

It never blocks on a child: it waits on process sentinels with a short timeout
and sends everything it owes the queue (redeliveries, sentinels) through a
non-blocking outbox (its :class:`~pcq.core.local.channel.SupervisorPort`).
Consumers stop via end-of-stream sentinels, sent only once the shared state
says every item is done -- never by killing daemons.

Each tick of the loop (:meth:`Supervisor._supervise`)::

    wait on the children's sentinels (TICK)
    --> events from consumers: "retry"/"requeue" -> outbox, "dead" -> done = -1
    --> a producer that crashed: put the rest of its range ourselves
    --> a consumer that died: SharedState.held -> resend what is not done,
        repay its semaphore slot, start a replacement
    --> flush the outbox (send_nowait)
    --> every item done: one sentinel per consumer; else the safety nets
        (reconcile: re-send items in no record; refill a leaked queue slot)
"""

from __future__ import annotations

import signal
import time
from collections import deque
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from pcq.core.console import Console
from pcq.core.local.channel import SENTINEL, Channel, SupervisorPort, encode, runs
from pcq.core.local.plan import Plan
from pcq.core.local.result import DeadLetter, LocalResult

__all__ = ["Supervisor"]

TICK = 0.05  # parent loop period (seconds)
QUIET = 0.2  # how long "nothing anywhere" must hold before we re-send missing items
SEM_QUIET = 1.0  # same, before we decide the queue-size semaphore leaked a slot
END_TIMEOUT = 10.0  # consumers must take their sentinel within this


class _Launcher(Protocol):
    def producer(self, index: int) -> BaseProcess: ...
    def consumer(self, slot: int, serial: int) -> BaseProcess: ...


class Supervisor:
    """Runs one session (see :func:`pcq.core.local.run.run_local`)."""

    def __init__(
        self,
        channel: Channel,
        plan: Plan,
        launcher: _Launcher,
        console: Console,
        *,
        consumers: int,
        max_restarts: int,
        grace: float,
    ) -> None:
        self.port, self.state, self.plan = SupervisorPort(channel), channel.state, plan
        self.bodies, self.total = plan.bodies, plan.total
        self.launcher, self.console = launcher, console
        self.n_producers, self.n_consumers = len(plan.ranges), consumers
        self.max_restarts, self.grace = max_restarts, grace
        self.producers: dict[int, BaseProcess] = {}  # running producers by index
        self.consumers: dict[int, BaseProcess] = {}  # live consumers by slot
        self.pids: dict[int, int] = {}  # serial -> pid, every consumer ever started
        self.outbox: deque[bytes] = deque()
        self.dead: dict[int, DeadLetter] = {}
        self.redelivered = self.retried = self.adopted = self.restarts = 0
        self.interrupts = 0
        self.stop_signal: int | None = None  # what asked us to stop (SIGINT, SIGTERM)
        self.failure: str | None = None
        self.cursor = 0  # every item below this index is done
        self.quiet_since: float | None = None
        self.sem_watch: tuple[float, int] | None = None

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        """Ctrl-C or SIGTERM (signal handler): ask everyone to stop; twice means now."""
        self.interrupts += 1
        if self.stop_signal is None:
            self.stop_signal = signum
        self.state.request_stop()

    # ------------------------------------------------------------------ run
    def run(self) -> LocalResult:
        """Start everyone, supervise until done or interrupted, reap everyone."""
        started = time.perf_counter()
        try:
            for index in range(self.n_producers):
                self.producers[index] = self.launcher.producer(index)
            for slot in range(self.n_consumers):
                self._start_consumer(slot)
            if self._supervise():
                self._end_stream()
            else:
                self._shutdown()
        except BaseException:
            self.state.request_stop()
            self._force_stop()
            raise
        return self._result(time.perf_counter() - started)

    def _children(self) -> list[BaseProcess]:
        return [*self.producers.values(), *self.consumers.values()]

    def _supervise(self) -> bool:
        """The main loop; True when every item is done, False on Ctrl-C or failure."""
        while not (self.interrupts or self.failure):
            wait([p.sentinel for p in self._children()], timeout=TICK)
            self._handle_events()
            self._reap_producers()
            self._reap_consumers(replace=True)
            self._flush()
            if not self.producers:
                if self._all_done():
                    return True
                self._reconcile()
            elif self.port.bounded:
                self._watch_semaphore()
        return False

    # --------------------------------------------------------------- events
    def _handle_events(self) -> None:
        """Nacks (retry or dead-letter) and released items sent by consumers."""
        for kind, first, deliveries, bodies, why in self.port.events():
            if kind == "dead":
                for k, body in enumerate(bodies):
                    if self.state.done[first + k] <= 0:  # not handled meanwhile
                        self.state.done[first + k] = -1
                        self.dead[first + k] = DeadLetter(str(first + k), body, deliveries, why)
            elif not self.state.stopping():
                self.outbox.extend(encode(first, deliveries, bodies, False))
                self.redelivered += len(bodies)
                self.retried += len(bodies) if kind == "retry" else 0

    def _flush(self) -> None:
        while self.outbox and self.port.send_nowait(self.outbox[0]):
            self.outbox.popleft()

    # ------------------------------------------------------------ producers
    def _reap_producers(self) -> None:
        for index, proc in list(self.producers.items()):
            if proc.exitcode is None:
                continue
            proc.join()
            del self.producers[index]
            if proc.exitcode != 0:
                self._adopt(index, proc)

    def _adopt(self, index: int, proc: BaseProcess) -> None:
        """A producer crashed: put the rest of its items ourselves."""
        start, end = self.plan.ranges[index]
        first = start + self.state.put[index]
        if self.state.stopping():  # stopping anyway: what it did not put stays "not produced"
            first = end
        if first < end:
            now = time.time()
            for i in range(first, end):
                self.state.produced_at[i] = now
            self.outbox.extend(encode(first, 0, self.bodies(first, end - first), False))
            self.adopted += end - first
        self.console.line(
            f"Producer {proc.pid} died ({_why(proc.exitcode)}); "
            f"parent put its last {end - first} item(s)"
        )

    # ------------------------------------------------------------ consumers
    def _start_consumer(self, slot: int) -> None:
        serial = len(self.pids)
        proc = self.launcher.consumer(slot, serial)
        self.consumers[slot] = proc
        self.pids[serial] = proc.pid or 0

    def _reap_consumers(self, *, replace: bool) -> None:
        for slot, proc in list(self.consumers.items()):
            if proc.exitcode is None:
                continue
            proc.join()
            del self.consumers[slot]
            if replace:
                self._recover(slot, proc)
            elif proc.exitcode != 0:
                self._settle_dead_slot(slot)

    def _settle_dead_slot(self, slot: int) -> int:
        """Give back what a dead consumer held; return how many items were put back."""
        first, count, deliveries, owes = self.state.held_by(slot)
        missing = [i for i in range(first, first + count) if self.state.done[i] == 0]
        if not self.state.stopping():  # when stopping they stay "not consumed"
            self._resend(missing, deliveries)
        if owes:
            self.port.repay()  # it died between recv and its own release
        self.state.clear(slot)
        self._repair_console_lock()
        return len(missing)

    def _recover(self, slot: int, proc: BaseProcess) -> None:
        """A consumer exited before its sentinel: put its items back, replace it."""
        put_back = self._settle_dead_slot(slot)
        self.restarts += 1
        if self.restarts > self.max_restarts:
            self.failure = f"consumers died {self.restarts} times: giving up"
            return
        self._start_consumer(slot)
        self.console.line(
            f"Consumer {proc.pid} died ({_why(proc.exitcode)}) holding {put_back} unfinished "
            f"item(s): put back; replacement => {self.consumers[slot].pid}"
        )

    def _resend(self, indexes: list[int], deliveries: int) -> None:
        for first, count in runs(indexes):
            self.outbox.extend(encode(first, deliveries, self.bodies(first, count), False))
        self.redelivered += len(indexes)

    def _repair_console_lock(self) -> None:
        """If the dead process held the console lock, release it on its behalf."""
        lock: Any = self.console.lock
        if lock is None:
            return
        if lock.acquire(True, 0.2):
            lock.release()
        else:  # held for 200 ms: live writers hold it for microseconds
            try:
                lock.release()
            except ValueError:
                pass

    # --------------------------------------------------------- completeness
    def _all_done(self) -> bool:
        """Advance the cursor past done items (amortised: each index read once)."""
        self.cursor = self.state.first_undone(self.cursor)
        return self.cursor >= self.total

    def _quiet(self) -> bool:
        """Nothing queued, nothing owed, no consumer holding anything."""
        if self.outbox or self.port.backlog():
            return False
        return not any(self.state.held_by(slot)[1] for slot in self.consumers)

    def _reconcile(self) -> None:
        """Safety net: a consumer died between recv and recording its claim.

        Its items are in no queue and no ``held`` record. Once everything has been
        quiet for QUIET seconds, re-send exactly the items not yet done.
        """
        now = time.monotonic()
        if not self._quiet():
            self.quiet_since = None
        elif self.quiet_since is None:
            self.quiet_since = now
        elif now - self.quiet_since >= QUIET:
            self.quiet_since = None
            done = self.state.done
            missing = [i for i in range(self.cursor, self.total) if done[i] == 0]
            self._resend(missing, 1)

    def _watch_semaphore(self) -> None:
        """Safety net for --queue-size: a slot leaked by a consumer killed in a
        microsecond window would, with a small queue, stall producers for good."""
        put = sum(self.state.put[: self.n_producers].tolist())
        if not self._quiet() or self.sem_watch is None or self.sem_watch[1] != put:
            self.sem_watch = (time.monotonic(), put)
            return
        if time.monotonic() - self.sem_watch[0] >= SEM_QUIET:
            self.port.refill()
            self.sem_watch = None

    # ---------------------------------------------------------------- ending
    def _end_stream(self) -> None:
        """Every item is done: one sentinel per live consumer, then reap them."""
        self.outbox.extend(SENTINEL for _ in self.consumers)
        deadline = time.monotonic() + END_TIMEOUT
        while self.consumers and time.monotonic() < deadline and not self.interrupts:
            self._flush()
            wait([p.sentinel for p in self.consumers.values()], timeout=TICK)
            self._reap_consumers(replace=False)
        self._force_stop()
        self.port.discard()

    def _shutdown(self) -> None:
        """Ctrl-C or failure: stop producing, let consumers finish the item in hand."""
        self.state.request_stop()
        deadline = time.monotonic() + self.grace
        while self._children() and time.monotonic() < deadline and self.interrupts < 2:
            wait([p.sentinel for p in self._children()], timeout=TICK)
            self.port.discard()  # unblocks producers stuck on a full queue
            self._handle_events()
            self._reap_producers()
            self._reap_consumers(replace=False)
        self._force_stop()
        self.port.discard()

    def _force_stop(self) -> None:
        """Last resort for children that did not stop in time: SIGTERM, then SIGKILL."""
        for proc in self._children():
            if proc.exitcode is None:
                proc.terminate()
        for proc in self._children():
            proc.join(1.0)
            if proc.exitcode is None:
                proc.kill()
                proc.join(1.0)
        self.producers.clear()
        self.consumers.clear()

    def _per_consumer(self, counts: dict[int, int]) -> dict[int, int]:
        """Items handled per consumer pid, every consumer ever started (a pid the
        system reused for a replacement adds up)."""
        out: dict[int, int] = {}
        for serial, pid in self.pids.items():
            out[pid] = out.get(pid, 0) + counts.get(serial + 1, 0)
        return out

    def _result(self, seconds: float) -> LocalResult:
        counts = self.state.done_counts(len(self.pids))
        missing = [str(i) for i in range(self.cursor, self.total) if self.state.done[i] == 0]
        return LocalResult(
            planned=self.total,
            produced=sum(self.state.put[: self.n_producers].tolist()) + self.adopted,
            consumed=sum(n for k, n in counts.items() if k > 0),
            duplicates=sum(self.state.dups[: len(self.pids)].tolist()),
            redelivered=self.redelivered,
            retried=self.retried,
            per_consumer=self._per_consumer(counts),
            seconds=seconds,
            dead_letters=sorted(self.dead.values(), key=lambda d: int(d.id)),
            missing=missing[:100],
            replacements=self.restarts,
            interrupted=bool(self.interrupts),
            stopped_by=signal.Signals(self.stop_signal).name if self.stop_signal else None,
            failure=self.failure,
        )


def _why(code: int | None) -> str:
    if code is not None and code < 0:
        return signal.Signals(-code).name
    return f"exit code {code}"
