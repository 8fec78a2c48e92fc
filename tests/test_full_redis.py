"""A full Redis (``maxmemory`` reached, ``noeviction``) is backpressure, never a deadlock.

Real ``redis-server`` processes with a small ``maxmemory``; real ``pcq produce`` /
``pcq consume`` processes keeping ``--ledger`` files (judged by ``tests/audit.py``):

* a Redis filled to ``maxmemory`` is drained by consumers that start on it (their
  heartbeat, claims and acks are ``allow-oom`` scripts), nothing lost;
* a producer blocked on a full Redis resumes by itself once consumers free memory;
* dead-lettering works on a full Redis, and the retention cap keeps the list bounded;
* a push refused for OOM applies nothing; the byte high-water mark holds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from audit import Audit
from fixtures_redis import RedisServer, serving
from redis_procs import env_for, only_run, processes, queued_items, wait_until

from pcq.core.errors import PcqError, UsageProblem
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings, parse_size
from pcq.core.redis_list.envelope import pack
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.scripts import Scripts
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item

pytestmark = pytest.mark.timeout(180)

BODY = "x" * 400  # items of ~0.5 KB: a few thousand fill the server below


class FullRedis(RedisServer):
    """A redis-server with a small maxmemory and the policy Redis recommends for queues."""

    fsync = "everysec"
    extra = ("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")


@pytest.fixture
def full_server(tmp_path: Path) -> Iterator[FullRedis]:
    yield from serving(FullRedis(tmp_path / "redis-full"))


def names_file(tmp_path: Path, count: int, prefix: str = "") -> Path:
    path = tmp_path / "names.txt"
    path.write_text("".join(f"{prefix}{n} {BODY}\n" for n in range(count)))
    return path


def is_full(client: redis.Redis) -> bool:
    try:
        client.set("probe", "x" * 1000)
    except redis.exceptions.OutOfMemoryError:
        return True
    client.delete("probe")
    return False


def fill(start, server: FullRedis, settings: RedisSettings, names: Path, ledger: Path) -> int:
    """Push until Redis is full (the producer gives up after 2 s); return items pushed."""
    env = env_for(settings)
    producer = start("producer", "--names-file", str(names), "--batch", "50", "--high-water", "0",
                     "--full-timeout", "2", "--timeout", "0", "--ledger", str(ledger), env=env)
    assert producer.wait(60) == 1, producer.stderr
    err = producer.stderr.strip().splitlines()
    assert "is full (maxmemory): producer waiting" in producer.stdout, producer.stdout
    assert err[-1].startswith("pcq: error: redis at") and "stayed full" in err[-1], err
    assert "Traceback" not in producer.stderr
    return Audit(ledger).count("produced")


def test_consumers_drain_a_full_redis(full_server: FullRedis, tmp_path: Path) -> None:
    settings = full_server.settings(heartbeat_ttl=2.0)
    ledger = tmp_path / "ledger"
    with processes(tmp_path) as start, full_server.client() as admin:
        pushed = fill(start, full_server, settings, names_file(tmp_path, 20000), ledger)
        assert pushed > 1000 and is_full(admin)
        env = env_for(settings)
        consumers = [start("consumer", "--drain", "--quiet", "--max-delay", "0", "--batch", "20",
                           "--ledger", str(ledger), env=env) for _ in range(2)]
        codes = [c.wait(90) for c in consumers]
        assert codes == [0, 0], [c.stderr[-2000:] for c in consumers]
        run = only_run(admin, settings)
        assert run is not None
        tally = read_tally(admin, Keys(settings.queue), run)
    report = Audit(ledger).report()
    print(f"drained {pushed} items from a full Redis: {report.summary()}")
    report.assert_sound()
    assert report.produced == pushed == tally["produced"] == tally["consumed"]
    assert (tally["lost"], tally["duplicates"], tally["dead_letters"]) == (0, 0, 0), tally


def test_a_blocked_producer_resumes_when_consumers_free_memory(
    full_server: FullRedis, tmp_path: Path
) -> None:
    settings = full_server.settings(heartbeat_ttl=2.0)
    ledger, items = tmp_path / "ledger", 9000
    env = env_for(settings)
    with processes(tmp_path) as start:
        producer = start("producer", "--names-file", str(names_file(tmp_path, items)),
                         "--batch", "50", "--high-water", "0", "--full-timeout", "120", "--json",
                         "--ledger", str(ledger), env=env)
        wait_until(lambda: "is full (maxmemory)" in producer.stderr, 60, "the producer to block")
        time.sleep(1.5)  # blocked for a while: it must not give up, nor push half a batch
        assert producer.popen.poll() is None, producer.stderr
        consumer = start("consumer", "--drain", "--quiet", "--max-delay", "0", "--batch", "20",
                         "--ledger", str(ledger), env=env)
        assert producer.wait(120) == 0, producer.stderr[-2000:]
        assert consumer.wait(60) == 0, consumer.stderr[-2000:]
    tally = producer.json()
    assert "has room again: producer resumes" in producer.stderr, producer.stderr[-2000:]
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (items, items, 0), tally
    assert tally["duplicates"] == 0
    report = Audit(ledger).report()
    report.assert_sound()
    assert report.produced == items


def test_dead_lettering_works_on_a_full_redis(full_server: FullRedis, tmp_path: Path) -> None:
    settings = full_server.settings(heartbeat_ttl=2.0)
    ledger = tmp_path / "ledger"
    with processes(tmp_path) as start, full_server.client() as admin:
        pushed = fill(start, full_server, settings, names_file(tmp_path, 20000, "poison"), ledger)
        assert is_full(admin)
        consumer = start("consumer", "--drain", "--quiet", "--max-delay", "0", "--batch", "20",
                         "--max-deliveries", "1", env=env_for(settings, PCQ_DEAD_MAX="500"))
        assert consumer.wait(120) == 0, consumer.stderr[-2000:]
        keys = Keys(settings.queue)
        run = only_run(admin, settings)
        assert run is not None
        tally = read_tally(admin, keys, run)
        kept, stats = admin.llen(keys.dead), admin.hgetall(keys.stats)
    assert (tally["produced"], tally["dead_letters"], tally["lost"]) == (pushed, pushed, 0), tally
    assert kept == 500  # the retention cap, and the rest counted as trimmed
    assert int(stats[b"dead_letters"]) == pushed
    assert int(stats[b"dead_trimmed"]) == pushed - 500
    assert "trimmed by retention" in consumer.stderr + consumer.stdout


def test_a_push_refused_for_oom_applies_nothing(full_server: FullRedis) -> None:
    settings = full_server.settings(high_water=0, full_timeout=0.5, batch=50)
    client = connect(settings)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings, put_timeout=None)
    try:
        with pytest.raises(PcqError, match="stayed full"):
            for n in range(0, 100000, 50):
                producer.put([Item(f"{producer.run}:{i}", BODY, time.time())
                              for i in range(n, n + 50)])
        before = (queued_items(client, settings), client.hgetall(keys.run(producer.run)))
        envelope = pack([b'{"v":1}'] * 50)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            Scripts(client).push([keys.queue, keys.run(producer.run), keys.queue_extra],
                                 [0, 0, 10**6, 50, envelope, 10**6])  # fmt: skip
        after = (queued_items(client, settings), client.hgetall(keys.run(producer.run)))
        assert after == before and before[0] % 50 == 0  # whole batches only (in items)
    finally:
        producer.close()
        client.close()


def test_high_water_in_bytes_holds(redis_server: RedisServer) -> None:
    mark = 64 * 1024
    settings = redis_server.settings(high_water=0, high_water_bytes=mark, batch=10)
    client = connect(settings)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings, put_timeout=0.3)
    try:
        with pytest.raises(PcqError, match="high-water mark"):
            for n in range(0, 100000, 10):
                producer.put([Item(f"{producer.run}:{i}", BODY, time.time())
                              for i in range(n, n + 10)])
        used = client.memory_usage(keys.queue)
        # An estimate (MEMORY USAGE samples the list; the batch adds its payload bytes,
        # not the list's per-element overhead): within 10 % of the mark.
        assert used is not None and 0.8 * mark < used <= 1.1 * mark, used
    finally:
        producer.close()
        client.delete(keys.queue)
        client.close()


def test_sizes_parse_and_bad_ones_are_usage_errors() -> None:
    assert parse_size("65536") == 65536
    assert parse_size("64kb") == parse_size("64K") == 65536
    assert parse_size("256mb") == 256 * 1024**2
    assert RedisSettings.from_env({"PCQ_HIGH_WATER_BYTES": "1gb"}).high_water_bytes == 1024**3
    with pytest.raises(UsageProblem, match="PCQ_HIGH_WATER_BYTES"):
        RedisSettings.from_env({"PCQ_HIGH_WATER_BYTES": "12 parsecs"})
    with pytest.raises(UsageProblem):
        RedisSettings(full_timeout=-1)
