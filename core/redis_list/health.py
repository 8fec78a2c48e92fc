"""A consumer's health file: its Redis heartbeat, readable without Python or Redis.

What "healthy" means for a consumer is unchanged: its heartbeat key is alive
in Redis. What changed is who checks it. Asking Redis took a fresh Python
process per check (~0.3-0.4 s of CPU: interpreter, Typer, redis-py, a
connection), every 5 s in every container. Instead, the consumer's heartbeat
thread -- which writes that key anyway -- records each heartbeat *Redis
acknowledged* in a file on the container's tmpfs, and the healthcheck is a
shell test of the file's time::

    heartbeat thread, every TTL/5           healthcheck (docker, every 10 s)
    started = time.time()                   sh -c 'test -n "$(find FILE -newermt now)"'
    SET P:hb:<me> ... PX ttl  --OK-->       exit 0 iff FILE's mtime is in the future
    utime(FILE, started + ttl)              (one sh, one find: ~2.5 ms of CPU)

The file's mtime is set to the moment the heartbeat key expires at the latest
(``started`` is taken before the write, so it is never later than Redis's own
expiry). So "mtime in the future" is "a heartbeat Redis accepted is still
alive", whatever ``PCQ_HEARTBEAT_TTL`` is -- the check needs no knob. A beat
that fails (Redis unreachable, credentials revoked) leaves the file alone, and
it goes stale within one TTL; so does a consumer whose heartbeat thread is
stuck or dead. A consumer that stops its heartbeat (SIGTERM, Redis given up
on) makes the file stale at once: its key is deleted or left to expire.
Several consumers on one host may share the file (the default path): it then
says "some consumer here is alive", as the Redis check did.

What a check costs is now mostly Docker's: each is a ``docker exec``, and an
exec of ``true`` alone costs the container ~18-21 ms of CPU (the runtime's
work; benchmarks/bench_idle.py), and the engine and kernel ~50 ms more --
hence the 30 s interval (``PCQ_HEALTH_INTERVAL``).

The path is ``RedisSettings.health_file`` (``PCQ_HEALTH_FILE``, default
``/tmp/pcq-consumer.alive``); the compose healthcheck reads the same variable
with the same default. ``find -newermt`` is GNU findutils (the Debian-based
image has it; busybox's find does not).
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone

from pcq.core.redis_common.settings import DEFAULT_HEALTH_FILE, RedisSettings

__all__ = ["HEALTHCHECK_SHELL", "HealthFile", "read_health"]

#: The consumer service's healthcheck (docker-compose.yml, ``CMD-SHELL``; ``$$`` there).
HEALTHCHECK_SHELL = (
    f'test -n "$(find "${{PCQ_HEALTH_FILE:-{DEFAULT_HEALTH_FILE}}}" -newermt now 2>/dev/null)"'
)


class HealthFile:
    """Keeps ``path``'s mtime at the expiry of the last heartbeat Redis acknowledged.

    Failures to write (a read-only or full /tmp, a file owned by someone else)
    are counted in ``errors`` and never stop the heartbeat: the file then goes
    stale and the check reports unhealthy, which is the truth -- nobody can
    vouch for this consumer.
    """

    def __init__(self, path: str, ttl: float) -> None:
        self.path = path
        self.ttl = ttl
        self.errors = 0

    @classmethod
    def of(cls, settings: RedisSettings) -> HealthFile | None:
        """The health file of these settings (None when ``health_file`` is empty)."""
        return cls(settings.health_file, settings.heartbeat_ttl) if settings.health_file else None

    def acknowledged(self, started: float) -> None:
        """A heartbeat sent at ``started`` (wall clock) was written: alive until ``started + ttl``."""
        self._set(started + self.ttl)

    def stopped(self) -> None:
        """No more heartbeats from this consumer: stale from now on."""
        self._set(time.time())

    def _set(self, until: float) -> None:
        try:
            try:
                os.utime(self.path, (until, until))  # one syscall per beat once the file exists
            except FileNotFoundError:
                with open(self.path, "a", encoding="utf-8"):
                    pass
                os.utime(self.path, (until, until))
        except OSError:
            self.errors += 1


def read_health(path: str = DEFAULT_HEALTH_FILE, now: float | None = None) -> tuple[bool, str]:
    """What the healthcheck decides, with a line a human can read.

    Returns:
        (healthy, one-line explanation).
    """
    now = time.time() if now is None else now
    try:
        until = os.stat(path).st_mtime
    except OSError as exc:
        return False, f"unhealthy: no heartbeat recorded in {path} ({exc.strerror})"
    when = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S UTC")
    if until > now:
        return True, f"healthy: heartbeat acknowledged by Redis, alive until {when} ({until - now:.1f} s; {path})"
    return False, f"unhealthy: last heartbeat expired at {when}, {now - until:.1f} s ago ({path})"
