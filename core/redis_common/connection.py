"""Connecting to Redis, and surviving its restarts.

Two layers of retrying, both on ``ConnectionError``, ``TimeoutError`` and
``BusyLoadingError`` (Redis answers LOADING while it replays its AOF after a
restart):

* inside redis-py, a short :class:`~redis.retry.Retry` with exponential
  backoff absorbs blips (a dropped connection is re-opened at once);
* around every operation of the Redis list's role objects (:mod:`pcq.core.redis_list`), :class:`Retrier`
  waits out longer outages with a capped exponential backoff, printing one line
  per attempt (``pcq: redis at host:port unreachable (ConnectionError), retry
  3/10 in 1.6s``) and finally raising :class:`~pcq.core.errors.ConnectionFailed`.

A full Redis (``OOM`` reply: ``maxmemory`` reached under ``noeviction``) is not
an outage: it becomes :class:`~pcq.core.errors.RedisFull`, which producers wait
out as backpressure (:mod:`pcq.core.redis_list.producer`).

A wrong password is never retried (redis-py's ``AuthenticationError`` is a
``ConnectionError`` subclass, hence the filter) and becomes one line, exit 1.
Messages name ``host:port`` only: URLs may carry a password.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    BusyLoadingError,
    NoPermissionError,
    OutOfMemoryError,
    RedisError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from pcq.core.errors import ConnectionFailed, PcqError, RedisFull
from pcq.core.redis_common.settings import RedisSettings

__all__ = ["RETRYABLE", "Retrier", "connect", "explain", "stderr_log", "text"]

T = TypeVar("T")
Log = Callable[[str], None]

RETRYABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError, BusyLoadingError)
_FATAL: tuple[type[Exception], ...] = (AuthenticationError, AuthorizationError)
SOCKET_TIMEOUT = 10.0  # above any BLMOVE timeout we use (<= 1 s); catches a paused server


def stderr_log(line: str) -> None:
    """Default log sink: one line on stderr."""
    print(line, file=sys.stderr, flush=True)


def text(value: object) -> str:
    """A reply of our byte-keeping clients (member, field, value) as text.

    Invalid UTF-8 is replaced, not raised: these are names and counts to show,
    never payloads (those are checked by :func:`pcq.core.redis_common.payload.decode`).
    """
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class _NoAuthRetry(Retry):
    """redis-py's Retry, minus retrying credentials errors (they never heal)."""

    def call_with_retry(  # type: ignore[override]
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(exc: Exception) -> bool:
            if isinstance(exc, _FATAL):
                return False
            return is_retryable(exc) if is_retryable is not None else True

        return super().call_with_retry(do, fail, retryable, with_failure_count)


def connect(settings: RedisSettings) -> redis.Redis:
    """Return a client for ``settings.url`` (lazy: nothing is sent yet).

    The client keeps bytes (``decode_responses=False``): payloads are checked
    for valid UTF-8 by :func:`pcq.core.redis_common.payload.decode`, not by the driver.
    """
    inner = _NoAuthRetry(ExponentialBackoff(cap=0.2, base=0.02), retries=2, supported_errors=RETRYABLE)
    extra: dict[str, Any] = {}
    if settings.file_password is not None:  # a URL's own password wins in from_url anyway
        extra["password"] = settings.file_password
    if settings.ca_file:  # rediss:// only (checked by RedisSettings)
        extra["ssl_ca_certs"] = settings.ca_file
    return redis.Redis.from_url(
        settings.url,
        **extra,
        retry=inner,
        retry_on_error=list(RETRYABLE),
        socket_timeout=SOCKET_TIMEOUT,
        socket_connect_timeout=2.0,
        socket_keepalive=True,
        health_check_interval=0,
        client_name="pcq",
    )


def explain(exc: BaseException, settings: RedisSettings) -> PcqError:
    """Turn a redis-py exception into a one-line :class:`PcqError`."""
    where = settings.where
    if isinstance(exc, PcqError):
        return exc
    if isinstance(exc, _FATAL):
        if settings.password is None:
            return PcqError(
                f"redis at {where} requires a password: put it in REDIS_URL or a file "
                "named by PCQ_REDIS_PASSWORD_FILE"
            )
        return PcqError(f"redis at {where} refused our credentials ({_first_line(exc)})")
    if isinstance(exc, OutOfMemoryError):
        return RedisFull(f"redis at {where} is full (maxmemory reached, nothing evicted): "
                         f"{_first_line(exc)}")
    if isinstance(exc, NoPermissionError):
        return PcqError(f"redis at {where}: permission denied ({_first_line(exc)})")
    if isinstance(exc, RETRYABLE):
        return ConnectionFailed(f"redis at {where} unreachable ({type(exc).__name__}: {_first_line(exc)})")
    return PcqError(f"redis at {where}: {type(exc).__name__}: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class Retrier:
    """Run an operation, retrying it through a Redis outage.

    Args:
        settings: Gives the number of retries and the server's ``host:port``.
        log: Where the "retrying" lines go (stderr by default).
        wait: Sleep function (``stop_event.wait`` lets a SIGTERM cut it short).
        base: First backoff in seconds; doubles up to ``cap``.
        cap: Longest single wait.
    """

    def __init__(
        self,
        settings: RedisSettings,
        log: Log = stderr_log,
        wait: Callable[[float], Any] = time.sleep,
        *,
        base: float = 0.2,
        cap: float = 5.0,
    ) -> None:
        self.settings = settings
        self.log = log
        self.wait = wait
        self.base = base
        self.cap = cap

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based)."""
        return min(self.cap, self.base * 2 ** (attempt - 1))

    def call(self, op: Callable[..., T], *args: Any) -> T:
        """Return ``op(*args)``; retry on connection trouble.

        Raises:
            ConnectionFailed: still unreachable after ``settings.retries`` retries.
            PcqError: any other Redis error, as one line.
        """
        retries = self.settings.retries
        attempt = 0
        while True:
            try:
                return op(*args)
            except _FATAL as exc:
                raise explain(exc, self.settings) from None
            except RETRYABLE as exc:
                attempt += 1
                if attempt > retries:
                    raise ConnectionFailed(
                        f"redis at {self.settings.where} unreachable after {retries} retries "
                        f"({type(exc).__name__}: {_first_line(exc)})"
                    ) from None
                pause = self.delay(attempt)
                self.log(
                    f"pcq: redis at {self.settings.where} unreachable ({type(exc).__name__}), "
                    f"retry {attempt}/{retries} in {pause:.1f}s"
                )
                self.wait(pause)
            except RedisError as exc:
                raise explain(exc, self.settings) from None
