"""What both roles of the Redis list share: :class:`ListLink`, one per role object.

A role object (:class:`~pcq.core.redis_list.producer.ListProducer` or
:class:`~pcq.core.redis_list.consumer.ListConsumer`) owns one link: the client
(whose pool the roles of one process share), the settings and key names, the
:class:`~pcq.core.redis_common.connection.Retrier` that waits out outages, the
Lua :class:`~pcq.core.redis_list.scripts.Scripts`, and a
:class:`~pcq.core.redis_list.wire.Wire` -- the connection of the role's thread
for its hot path (pushes, claims with their acknowledgements).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from pcq.core.redis_common.connection import RETRYABLE, Retrier, stderr_log
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.scripts import Scripts
from pcq.core.redis_list.wire import Wire

__all__ = ["ListLink", "Notify"]

Notify = Callable[[str], None]


class ListLink:
    """A role's way to Redis: client, settings, keys, retrier, scripts and its own Wire.

    Args:
        client: From :func:`pcq.core.redis_common.connection.connect`; the caller closes it.
        settings: Queue name, batch, caps, heartbeat TTL, retries.
        log: Sink for retry lines (stderr).
        wait: Sleep used between retries.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: RedisSettings,
        *,
        log: Notify = stderr_log,
        wait: Callable[[float], object] = time.sleep,
    ) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.queue)
        self.retry = Retrier(settings, log, wait)
        self.scripts = Scripts(client)
        self.wire = Wire(client)  # the hot path: this role's thread's own connection

    def eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run script ``name`` on the Wire, retried through outages; return its reply."""
        command = self.scripts.command(name, keys, args)
        return self.retry.call(self.scripts.reloading, lambda: self.wire.execute([command])[0])

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one round trip on the Wire, retried (scripts reloaded)."""
        return self.retry.call(self.scripts.reloading, lambda: self.wire.execute(commands))

    def send(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> bool:
        """Send script ``name`` on the Wire now; :meth:`receive` reads its reply later.

        Replies come back in the order the calls went out. Returns False when
        the send failed: the Wire dropped its connection, and with it the
        replies still awaited, so the caller runs what it had in flight again
        the synchronous way (:meth:`eval`), as after any error :meth:`receive`
        raises. Only for calls that are safe to repeat (the claim script's
        call numbers).
        """
        try:
            self.wire.send([self.scripts.command(name, keys, args)])
        except RETRYABLE:
            return False
        return True

    def receive(self) -> Any:
        """The reply of the oldest call :meth:`send` sent and nobody read yet.

        Raises:
            redis.RedisError: the reply is lost (connection trouble) or an error
                (NOSCRIPT after a Redis restart, BUSY...); run the call again.
        """
        return self.wire.receive(1)[0]

    def close(self) -> None:
        """Hand the Wire's connection back to the client's pool."""
        self.wire.close()
