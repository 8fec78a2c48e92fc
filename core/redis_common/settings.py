"""Settings of the Redis transport, read once at the entry point and passed down.

Modelled on arq's ``RedisSettings``: one frozen, typed object built by
:meth:`RedisSettings.from_env` (environment variables) and then
:meth:`RedisSettings.with_overrides` (command-line options, which win). Nothing
below the entry point reads the environment again.

Environment variables (command-line option in brackets):

======================  =====================================================
``REDIS_URL``           ``redis[s]://[user[:password]@]host:port/db`` (``--redis-url``)
``PCQ_REDIS_PASSWORD_FILE`` file holding the password (Docker secrets: ``/run/secrets/...``)
``PCQ_REDIS_CA_FILE``   CA certificate that signed the server's (``rediss://`` only)
``PCQ_QUEUE``           queue name, default ``pcq`` (``--queue``)
``PCQ_BATCH``           items per Redis round trip, default 1 (``--batch``)
``PCQ_MAX_DELIVERIES``  deliveries before dead-lettering, default 5
``PCQ_HIGH_WATER``      producer waits while the queue is this long (10000)
``PCQ_HIGH_WATER_BYTES`` ... or while the queue list takes this many bytes in
                        Redis (``MEMORY USAGE``; ``64mb`` style; 0 = off, the default)
``PCQ_FULL_TIMEOUT``    producer gives up after Redis stayed full (maxmemory)
                        this many seconds, default 300 (``--full-timeout``)
``PCQ_HEARTBEAT_TTL``   consumer heartbeat lifetime in seconds, default 5
``PCQ_MAX_PAYLOAD_BYTES`` size cap of one encoded item, default 64 KiB
``PCQ_MAX_DELAY``       consumer's handler sleeps up to this long (0.5 s)
``PCQ_ITEMS``           producer: number of generated items (``--items``)
``PCQ_REDIS_RETRIES``   reconnection attempts before giving up, default 10
``PCQ_DEAD_MAX``        dead letters kept, oldest trimmed first, default 1000
``PCQ_DEAD_MAX_AGE``    dead letters older than this many seconds are trimmed (7 days)
``PCQ_HEALTH_FILE``     consumer's health file, default ``/tmp/pcq-consumer.alive``
                        (see :mod:`pcq.core.redis_list.health`)
======================  =====================================================

Bad values raise :class:`pcq.core.errors.UsageProblem` (one line, exit 2).

Passwords: in containers the URL names the user only (``redis://consumer@redis:6379/0``)
and ``PCQ_REDIS_PASSWORD_FILE`` points at a Docker secret, so no password sits in an
environment variable (``docker inspect`` shows those) or a command line (``ps``). The
file is read here, once; its content is kept out of ``repr`` and every message.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from pcq.core.errors import UsageProblem
from pcq.core.transport import AckMode

__all__ = ["DEFAULT_HEALTH_FILE", "DEFAULT_URL", "RedisSettings", "parse_size", "read_secret",
           "redact_url"]

DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_HEALTH_FILE = "/tmp/pcq-consumer.alive"  # the compose healthcheck's default too
MAX_BATCH = 1000  # Lua's unpack() stack limit is ~8000 values; stay well below it
_QUEUE_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_SIZE_RE = re.compile(r"^\s*([0-9]+)\s*(b|kb|k|kib|mb|m|mib|gb|g|gib)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1024**2, "mb": 1024**2,
          "mib": 1024**2, "g": 1024**3, "gb": 1024**3, "gib": 1024**3}  # fmt: skip


def parse_size(text: str) -> int:
    """Bytes from ``"65536"``, ``"64kb"``, ``"64mb"``, ``"1gb"`` (powers of 1024, as Redis reads them).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 65536, 64kb, 64mb, 1gb)")
    return int(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]


# env var -> (field name, parser)
_ENV: dict[str, tuple[str, Any]] = {
    "REDIS_URL": ("url", str),
    "PCQ_QUEUE": ("queue", str),
    "PCQ_BATCH": ("batch", int),
    "PCQ_ACK": ("ack", AckMode),
    "PCQ_MAX_DELIVERIES": ("max_deliveries", int),
    "PCQ_HIGH_WATER": ("high_water", int),
    "PCQ_HIGH_WATER_BYTES": ("high_water_bytes", parse_size),
    "PCQ_FULL_TIMEOUT": ("full_timeout", float),
    "PCQ_HEARTBEAT_TTL": ("heartbeat_ttl", float),
    "PCQ_MAX_PAYLOAD_BYTES": ("max_payload_bytes", int),
    "PCQ_MAX_DELAY": ("max_delay", float),
    "PCQ_ITEMS": ("items", int),
    "PCQ_REDIS_RETRIES": ("retries", int),
    "PCQ_RUN_TTL": ("run_ttl", int),
    "PCQ_DEAD_MAX": ("dead_max", int),
    "PCQ_DEAD_MAX_AGE": ("dead_max_age", int),
    "PCQ_HEALTH_FILE": ("health_file", str),
    "PCQ_REDIS_PASSWORD_FILE": ("password_file", str),
    "PCQ_REDIS_CA_FILE": ("ca_file", str),
}
_KIND_NAMES: dict[Any, str] = {AckMode: "ack mode (item or batch)"}
MAX_SECRET_BYTES = 4096  # a password file, not a dump: refuse anything bigger


def read_secret(path: str, what: str = "PCQ_REDIS_PASSWORD_FILE") -> str:
    """The first line of a secret file, stripped; one line (never its content) if unusable."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise UsageProblem(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise UsageProblem(f"{what} {path}: over {MAX_SECRET_BYTES} bytes, not a password file")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UsageProblem(f"{what} {path}: not UTF-8 text") from None
    secret = lines[0].strip() if lines else ""
    if not secret:
        raise UsageProblem(f"{what} {path}: empty")
    return secret


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (safe to print)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable url>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Everything the Redis producer and consumer need to know.

    Attributes:
        url: Redis URL, possibly with credentials (never printed unredacted).
        queue: Queue name; all its keys share the prefix ``pcq:{queue}``.
        batch: Items per round trip (producer push, consumer claim).
        ack: When a consumer acknowledges what it handled: after each item, or
            a batch's handled items together (:class:`~pcq.core.transport.AckMode`).
        max_deliveries: Deliveries after which a failing item is dead-lettered.
        high_water: The producer waits while the queue holds this many items
            (0 disables backpressure).
        high_water_bytes: ... or while the queue list takes this many bytes in
            Redis, as ``MEMORY USAGE`` estimates it (0: no byte limit).
        full_timeout: Seconds a producer waits on a full Redis (maxmemory
            reached) before it gives up.
        heartbeat_ttl: Seconds a consumer's heartbeat lives without refresh.
        max_payload_bytes: Encoded items larger than this are dead-lettered.
        max_delay: Upper bound of the demo handler's random sleep (seconds).
        items: Producer: how many items to generate (None: the seed's names).
        retries: Reconnection attempts before a command gives up.
        run_ttl: Seconds a finished run's acked bitmap and tally stay in Redis
            (0: for ever); see :func:`pcq.core.redis_list.tally.retire_run`.
        dead_max: Dead letters kept (0: no cap); the oldest are trimmed, and counted.
        dead_max_age: Seconds a dead letter is kept (0: for ever).
        health_file: Absolute path whose mtime a consumer keeps at its
            heartbeat's expiry ("" for none); see :mod:`pcq.core.redis_list.health`.
        password_file: Where the password came from (a path, safe to show).
        ca_file: CA certificate to verify a ``rediss://`` server with.
        file_password: The password read from ``password_file`` (never shown).
    """

    url: str = DEFAULT_URL
    queue: str = "pcq"
    batch: int = 1
    ack: AckMode = AckMode.ITEM
    max_deliveries: int = 5
    high_water: int = 10_000
    high_water_bytes: int = 0
    full_timeout: float = 300.0
    heartbeat_ttl: float = 5.0
    max_payload_bytes: int = 64 * 1024
    max_delay: float = 0.5
    items: int | None = None
    retries: int = 10
    run_ttl: int = 7 * 24 * 3600
    dead_max: int = 1000
    dead_max_age: int = 7 * 24 * 3600
    health_file: str = DEFAULT_HEALTH_FILE
    password_file: str | None = None
    ca_file: str | None = None
    file_password: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_url()
        self._check_secrets()
        if not _QUEUE_RE.match(self.queue):
            raise UsageProblem(f"invalid queue name {self.queue!r} (use 1-64 of A-Z a-z 0-9 _ . -)")
        if not 1 <= self.batch <= MAX_BATCH:
            raise UsageProblem(f"batch must be between 1 and {MAX_BATCH}, got {self.batch}")
        if self.max_deliveries < 1:
            raise UsageProblem(f"max deliveries must be >= 1, got {self.max_deliveries}")
        if self.high_water < 0:
            raise UsageProblem(f"high-water mark must be >= 0, got {self.high_water}")
        if 0 < self.high_water < self.batch:
            raise UsageProblem(
                f"high-water mark ({self.high_water}) must be at least the batch ({self.batch})"
            )
        if self.high_water_bytes < 0:
            raise UsageProblem(f"high-water bytes must be >= 0, got {self.high_water_bytes}")
        if not (math.isfinite(self.full_timeout) and self.full_timeout >= 0):
            raise UsageProblem(f"full timeout must be >= 0 seconds, got {self.full_timeout}")
        if self.dead_max < 0 or self.dead_max_age < 0:
            raise UsageProblem(
                f"dead-letter retention must be >= 0, got {self.dead_max} / {self.dead_max_age}s"
            )
        if not (math.isfinite(self.heartbeat_ttl) and self.heartbeat_ttl >= 1):
            raise UsageProblem(f"heartbeat TTL must be >= 1 second, got {self.heartbeat_ttl}")
        if self.max_payload_bytes < 256:
            raise UsageProblem(f"max payload bytes must be >= 256, got {self.max_payload_bytes}")
        if not (math.isfinite(self.max_delay) and self.max_delay >= 0):
            raise UsageProblem(f"max delay must be >= 0, got {self.max_delay}")
        if self.items is not None and self.items < 0:
            raise UsageProblem(f"items must be >= 0, got {self.items}")
        if self.retries < 0:
            raise UsageProblem(f"retries must be >= 0, got {self.retries}")
        if self.run_ttl < 0:
            raise UsageProblem(f"run TTL must be >= 0 seconds, got {self.run_ttl}")
        if self.health_file and not self.health_file.startswith("/"):
            raise UsageProblem(f"health file must be an absolute path (or empty), got {self.health_file!r}")

    def _check_url(self) -> None:
        shown = redact_url(self.url)
        try:
            parts = urlsplit(self.url)
            port = parts.port
        except ValueError as exc:
            raise UsageProblem(f"invalid REDIS_URL {shown}: {exc}") from None
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise UsageProblem(f"invalid REDIS_URL {shown}: scheme must be redis://, rediss:// or unix://")
        if parts.scheme != "unix" and not parts.hostname:
            raise UsageProblem(f"invalid REDIS_URL {shown}: no host")
        if port is not None and not 0 < port < 65536:
            raise UsageProblem(f"invalid REDIS_URL {shown}: bad port")
        db = parts.path.lstrip("/")
        if parts.scheme != "unix" and db and not db.isdigit():
            raise UsageProblem(f"invalid REDIS_URL {shown}: database must be a number")

    def _check_secrets(self) -> None:
        if self.password_file and urlsplit(self.url).password is not None:
            raise UsageProblem(
                f"both REDIS_URL ({redact_url(self.url)}) and PCQ_REDIS_PASSWORD_FILE give a "
                "password: give it once"
            )
        if self.ca_file and urlsplit(self.url).scheme != "rediss":
            raise UsageProblem(f"PCQ_REDIS_CA_FILE needs a rediss:// URL, got {redact_url(self.url)}")

    # Construction ------------------------------------------------------------
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RedisSettings:
        """Build settings from environment variables (unset ones keep defaults)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var, (name, kind) in _ENV.items():
            raw = env.get(var, "").strip()
            if not raw:
                continue
            try:
                values[name] = kind(raw)
            except ValueError:
                what = "size" if kind is parse_size else _KIND_NAMES.get(kind, kind.__name__)
                raise UsageProblem(f"{var}={raw!r} is not a valid {what}") from None
        if values.get("password_file"):
            values["file_password"] = read_secret(values["password_file"])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> RedisSettings:
        """Return a copy with every override that is not ``None`` applied."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    # Derived values ----------------------------------------------------------
    @property
    def where(self) -> str:
        """``host:port`` of the server (no credentials), for messages."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":
            return parts.path
        return f"{parts.hostname}:{parts.port or 6379}"

    @property
    def username(self) -> str | None:
        """User name from the URL, if any."""
        user = urlsplit(self.url).username
        return unquote(user) if user else None

    @property
    def password(self) -> str | None:
        """Password from the URL or the password file, if any (never print it)."""
        secret = urlsplit(self.url).password
        return unquote(secret) if secret else self.file_password

    def secret_url(self) -> str:
        """The URL with the password (and CA file) in it, for libraries that take
        nothing but a URL (RQ's settings module). Never print it: :func:`redact_url`.
        """
        parts = urlsplit(self.url)
        if self.file_password is not None and parts.password is None and parts.scheme != "unix":
            user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
            host = parts.netloc.rsplit("@", 1)[-1]
            netloc = f"{user}:{quote(self.file_password, safe='')}@{host}"
            parts = parts._replace(netloc=netloc)
        if self.ca_file:
            query = f"{parts.query}&" if parts.query else ""
            parts = parts._replace(query=f"{query}ssl_ca_certs={quote(self.ca_file)}")
        return parts.geturl()

    @property
    def heartbeat_every(self) -> float:
        """Seconds between heartbeats: five beats per TTL."""
        return self.heartbeat_ttl / 5

    @property
    def reap_every(self) -> float:
        """Seconds between reaper passes (2 s for the default 5 s TTL)."""
        return self.heartbeat_ttl * 0.4

    def __repr__(self) -> str:  # never show the password
        shown = f"url={redact_url(self.url)!r}, queue={self.queue!r}, batch={self.batch}"
        if self.password_file:
            shown += f", password_file={self.password_file!r}"
        return f"RedisSettings({shown})"
