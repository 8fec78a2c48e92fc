"""Benchmark: what one Lua script call costs Redis, piece by piece (not a test).

Each line sends ``--calls`` copies of one call in pipelines to a throwaway
``redis-server`` (hot caches), then reads ``INFO commandstats``: microseconds
per ``EVALSHA`` (the script's whole time, its own commands included) and the
time of the commands it made. Compares a bare call, single ``redis.call`` s,
``claim.lua`` one item at a time, and an envelope of 100 payloads crossing
into Lua (``push.lua``). The figures explain why unbatched stays near 0.7x of
a raw loop (``docs/benchmarks.md``, "Third stop").

Usage: ``python benchmarks/bench_script_calls.py [--calls 3000]``.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from typing import Any

import redis
from bench_redis import start_server

from pcq.core.redis_list.scripts import _lua

KEYS7 = [f"k{i}" for i in range(7)]
ARGS10 = [str(i) for i in range(10)]
CLAIM_KEYS = ["q", "proc", "consumers", "deliv", "errs", "extra", "call"]
ENVELOPE = b"#batch 100\n" + b"\n".join(
    b'{"v":1,"id":"r1:%d","body":"Name Surname %d","produced_at":1764300000.123456}' % (i, i)
    for i in range(100)
)


def measure(r: redis.Redis, label: str, add: Callable[[Any, int], None], calls: int,
            command: str = "evalsha") -> None:  # fmt: skip
    """Send ``calls`` calls (``add(pipeline, i)``), print µs per call and of the inner commands."""
    r.config_resetstat()
    pipe = r.pipeline(transaction=False)
    for i in range(calls):
        add(pipe, i)
        if i % 200 == 199:
            pipe.execute()
            pipe = r.pipeline(transaction=False)
    pipe.execute()
    stats = r.info("commandstats")
    main = stats[f"cmdstat_{command}"]
    inner = sum(v["usec"] for k, v in stats.items() if k != f"cmdstat_{command}")
    print(f"{label:58} {main['usec_per_call']:7.2f} µs/call  (inner commands {inner / calls:5.2f})")


def one_liners(r: redis.Redis, calls: int) -> None:
    """A bare call, then ten of one ``redis.call`` (per call: divide the difference by 10)."""
    def script(body: str) -> Callable[[Any, int], None]:
        sha = r.script_load("#!lua flags=allow-oom\n" + body + "\nreturn 1")
        return lambda p, i: p.evalsha(sha, 7, *KEYS7, *ARGS10)

    measure(r, "return 1 (7 keys, 10 small arguments)", script(""), calls)
    for name, call in [("HLEN", "'HLEN', 'h1'"), ("DEL of a missing key", "'DEL', 'nokey'"),
                       ("LMOVE from an empty list", "'LMOVE', 'empty', 'p', 'LEFT', 'RIGHT'"),
                       ("HMGET", "'HMGET', 'h1', 'produced'"), ("SETBIT", "'SETBIT', 'b', 5, 1"),
                       ("HINCRBY", "'HINCRBY', 'h2', 'c1', 1"),
                       ("SET ... GET", "'SET', 'k', ARGV[1] .. ':' .. ARGV[2], 'GET'")]:  # fmt: skip
        measure(r, f"10 x {name}", script(f"redis.call({call})\n" * 10), calls)


def claims(r: redis.Redis, calls: int) -> None:
    """``claim.lua`` one item at a time: from an empty queue; acknowledging 1 and claiming 1."""
    sha = r.script_load(_lua("claim"))
    r.sadd("consumers", "c1")
    r.hset("P:run:r1", "produced", 10**6)
    number = iter(range(1, 10**9))

    def args(want: int, mode: str, runs: list[tuple[str, str, str]]) -> list[Any]:
        return ["P", "c1", "cp", next(number), want, mode, 0, len(runs), *[a for run in runs for a in run]]

    measure(r, "claim.lua: claim 1, queue empty",
            lambda p, i: p.evalsha(sha, 7, *CLAIM_KEYS, *args(1, "none", [])), calls)  # fmt: skip

    def ack_and_claim(p: Any, i: int) -> None:
        p.rpush("q", b'{"v":1,"id":"r1:%d","body":"x"}' % i)
        p.evalsha(sha, 7, *CLAIM_KEYS, *args(1, "all", [("r1", f"{i}-{i}", "")]))

    measure(r, "claim.lua: acknowledge 1, claim 1 (+ the RPUSH that queues it)", ack_and_claim, calls)


def envelopes(r: redis.Redis, calls: int) -> None:
    """A 100-payload envelope: into Lua, pushed from Lua, and through ``push.lua``."""
    print(f"envelope: {len(ENVELOPE)} bytes")
    noop = r.script_load("return 1")
    rpush = r.script_load("return redis.call('RPUSH', KEYS[1], ARGV[5])")
    push = r.script_load(_lua("push"))
    r.delete("q")
    measure(r, "RPUSH of the envelope (a command)", lambda p, i: p.rpush("q", ENVELOPE), calls,
            command="rpush")  # fmt: skip
    for label, sha in [("return 1, the envelope as an argument", noop),
                       ("RPUSH of the envelope from a script", rpush), ("push.lua", push)]:  # fmt: skip
        r.delete("q", "run", "extra")
        measure(r, label, _push_call(sha), calls)


def _push_call(sha: str) -> Callable[[Any, int], None]:
    """Call ``sha`` with push.lua's keys and arguments (batch sequence number and floor ``i + 1``)."""
    def add(pipe: Any, i: int) -> None:
        pipe.evalsha(sha, 3, "q", "run", "extra", 10**9, 0, i + 1, 100, ENVELOPE, i + 1)

    return add


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(tmp)
        try:
            with redis.Redis(port=port) as r:
                one_liners(r, opts.calls)
                claims(r, opts.calls)
                envelopes(r, opts.calls)
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
