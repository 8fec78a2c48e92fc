"""The Redis list's Lua scripts (``lua/*.lua``): loaded from the package, registered per client.

Each script is one atomic step of an item's way through the list (the picture
is in :mod:`pcq.core.redis_list`): ``push``, ``claim`` (which also carries the
previous batch's acknowledgements), ``retry``, ``dead``, ``release``, ``reap``
and ``drained``; the roles' liveness and leaving (``beat``, ``leave``,
``close``), a run's counts (``tally``), and the dead-letter inbox's
``retain``, ``requeue`` and ``purge``.

Full Redis: every script a consumer (or an operator) runs starts with
``#!lua flags=allow-oom``, so it runs even when Redis is at ``maxmemory``
(those steps free memory, or move it, or write a few bytes); ``push`` is
flagged without it, so on a full Redis the whole push is refused before it
starts (nothing half-applied) and the producer waits; ``tally`` is
``no-writes``. Scripts with a shebang line must be run with EVAL/EVALSHA (as
here) and take their keys as KEYS.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.exceptions import NoScriptError

__all__ = ["SCRIPT_NAMES", "Scripts"]

T = TypeVar("T")
_LUA_DIR = Path(__file__).with_name("lua")
SCRIPT_NAMES = (
    "push", "claim", "retry", "dead", "release", "reap", "drained", "beat", "leave", "close",
    "tally", "retain", "requeue", "purge",
)
# Shared functions put in front of the scripts that use them: lib/envelope.lua for
# those that open envelopes, lib/acked.lua for those that write or read a run's
# acknowledged items (its bitmap and set).
_LIBS = {
    "claim": ("envelope", "acked"),
    "reap": ("envelope", "acked"),
    "requeue": ("acked",),
    "tally": ("acked",),
}


@cache
def _lua(name: str) -> str:
    source = (_LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    if name not in _LIBS:
        return source
    prelude = "\n".join(
        (_LUA_DIR / "lib" / f"{lib}.lua").read_text(encoding="utf-8") for lib in _LIBS[name]
    )
    if source.startswith("#!"):  # a shebang (script flags) must stay the first line
        shebang, _, body = source.partition("\n")
        return f"{shebang}\n{prelude}\n{body}"
    return f"{prelude}\n{source}"


class Scripts:
    """The Lua scripts, registered once per client.

    Called directly they use EVALSHA and reload themselves on NOSCRIPT (a
    restarted Redis has forgotten them). On a :class:`~pcq.core.redis_list.wire.Wire`,
    :meth:`command` gives a bare EVALSHA -- redis-py's own pipeline support
    would add a ``SCRIPT EXISTS`` round trip to every execute -- and
    :meth:`reloading` loads them all and runs the commands again when Redis
    answers NOSCRIPT.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        self._scripts = {name: client.register_script(_lua(name)) for name in SCRIPT_NAMES}
        self.push = self._scripts["push"]
        self.claim = self._scripts["claim"]
        self.retry = self._scripts["retry"]
        self.dead = self._scripts["dead"]
        self.release = self._scripts["release"]
        self.reap = self._scripts["reap"]
        self.drained = self._scripts["drained"]
        self.beat = self._scripts["beat"]
        self.leave = self._scripts["leave"]
        self.close = self._scripts["close"]
        self.tally = self._scripts["tally"]
        self.retain = self._scripts["retain"]
        self.requeue = self._scripts["requeue"]
        self.purge = self._scripts["purge"]

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
            for name in SCRIPT_NAMES:
                self._client.script_load(_lua(name))
            return run()
