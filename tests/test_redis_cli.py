"""`pcq produce` / `pcq consume` as real processes against a real redis-server.

Every test judges by the ledger in Redis (ids), not by log lines.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import redis
from audit import Audit
from fixtures_redis import RedisServer
from redis_procs import (
    acked_by,
    env_for,
    only_run,
    processes,
    processing_lists,
    registered,
    unacked_held,
    wait_until,
)

from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acked import acked_count, acked_ids


def ledger(client: redis.Redis, settings: RedisSettings, run: str) -> set[str]:
    return acked_ids(client, Keys(settings.queue), run)


def test_exactly_once_with_three_consumer_processes(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    audit = tmp_path / "audit"  # pcq's own --ledger files, kept outside Redis
    env = env_for(redis_settings, PCQ_LEDGER=str(audit))
    with processes(tmp_path) as start:
        consumers = [
            start("consumer", "--drain", "--quiet", "--batch", "20", "--max-delay", "0", env=env)
            for _ in range(3)
        ]
        wait_until(lambda: len(registered(redis_client, redis_settings)) == 3, 20, "3 consumers")
        producer = start("producer", "--items", "3000", "--batch", "50", "--json", env=env)
        assert producer.wait(120) == 0, producer.stderr
        tally = producer.json()
        for c in consumers:
            assert c.wait(30) == 0, c.stderr
    run = tally["run"]
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (3000, 3000, 0)
    assert (tally["duplicates"], tally["dead_letters"]) == (0, 0)
    assert ledger(redis_client, redis_settings, run) == {f"{run}:{n}" for n in range(3000)}
    assert set(tally["per_consumer"]) == {c.consumer_id for c in consumers}
    assert sum(tally["per_consumer"].values()) == 3000
    assert processing_lists(redis_client, redis_settings) == {}
    assert registered(redis_client, redis_settings) == set()  # all deregistered
    assert "Starting producer =>" in producer.stderr  # demo lines on stderr with --json
    # The run's ledger is kept for PCQ_RUN_TTL (7 days), then expires.
    keys = Keys(redis_settings.queue)
    ttls = [redis_client.ttl(k) for k in (keys.acked_bits(run), keys.run(run))]
    assert all(0 < t <= 7 * 24 * 3600 for t in ttls), ttls
    report = Audit(audit).report()
    assert (report.produced, report.handled, report.handlings) == (3000, 3000, 3000), report
    assert report.per_consumer == tally["per_consumer"]
    for key in ("seconds", "items_per_second", "redelivered"):
        assert key in tally


@pytest.mark.parametrize("ack", ["item", "batch"])
def test_sigkilled_consumer_items_are_redelivered(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis, ack: str
) -> None:
    env = env_for(redis_settings)
    work = ("--drain", "--quiet", "--batch", "5", "--max-delay", "0.01", "--ack", ack)
    with processes(tmp_path) as start:
        victim = start("consumer", *work, env=env)
        survivor = start("consumer", *work, env=env)
        wait_until(lambda: len(registered(redis_client, redis_settings)) == 2, 20, "2 consumers")
        producer = start("producer", "--items", "600", "--batch", "20", "--json", env=env)
        run = wait_until(lambda: only_run(redis_client, redis_settings), 20, "the run")
        wait_until(
            lambda: acked_by(redis_client, redis_settings, run, victim.consumer_id) >= 10,
            30,
            "the victim to ack 10 items",
        )
        victim.signal(signal.SIGKILL)
        assert victim.wait(10) == -signal.SIGKILL
        # What it died holding and had not acknowledged in Redis (an item of 2 ms or more
        # is acknowledged at once; its envelope stays until the rest are settled).
        held = unacked_held(redis_client, Keys(redis_settings.queue), victim.consumer_id)
        assert held >= 1  # an envelope leaves with its last acknowledgement, in one Lua call
        assert producer.wait(120) == 0, producer.stderr
        tally = producer.json()
        assert survivor.wait(30) == 0, survivor.stderr
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (600, 600, 0)
    assert tally["redelivered"] >= held
    assert ledger(redis_client, redis_settings, run) == {f"{run}:{n}" for n in range(600)}
    assert processing_lists(redis_client, redis_settings) == {}
    assert "reaped 1 dead consumer" in survivor.stdout


def test_sigterm_finishes_current_item_and_exits_0(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    env = env_for(redis_settings)
    keys = Keys(redis_settings.queue)
    with processes(tmp_path) as start:
        service = start("consumer", "--batch", "5", "--max-delay", "0.2", env=env)
        wait_until(lambda: registered(redis_client, redis_settings), 20, "the consumer")
        producer = start("producer", "--items", "40", "--batch", "10", "--json", env=env)
        run = wait_until(lambda: only_run(redis_client, redis_settings), 20, "the run")
        wait_until(lambda: acked_by(redis_client, redis_settings, run, service.consumer_id) >= 3,
                   30, "3 acks")  # fmt: skip
        service.signal(signal.SIGTERM)
        assert service.wait(10) == 0, service.stderr
        assert redis_client.llen(keys.processing(service.consumer_id)) == 0
        assert service.consumer_id not in registered(redis_client, redis_settings)
        assert f"Consumer {service.pid} exiting..." in service.stdout
        finisher = start("consumer", "--drain", "--quiet", "--max-delay", "0", env=env)
        assert producer.wait(60) == 0, producer.stderr
        assert finisher.wait(30) == 0
    tally = producer.json()
    assert (tally["produced"], tally["consumed"], tally["lost"], tally["duplicates"]) == (40, 40, 0, 0)
    assert tally["redelivered"] == 0  # handed back, not failed
    assert ledger(redis_client, redis_settings, run) == {f"{run}:{n}" for n in range(40)}


def test_poison_item_is_dead_lettered_with_reason(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    names = tmp_path / "names.txt"
    names.write_text("Meatwad\npoison pill\nCarl\n")
    env = env_for(redis_settings)
    with processes(tmp_path) as start:
        consumer = start("consumer", "--drain", "--max-deliveries", "3", "--max-delay", "0", env=env)
        producer = start("producer", "--names-file", str(names), "--json", env=env)
        assert producer.wait(60) == 0, producer.stderr
        assert consumer.wait(30) == 0, consumer.stderr
    tally = producer.json()
    assert (tally["produced"], tally["consumed"], tally["dead_letters"], tally["lost"]) == (3, 2, 1, 0)
    assert tally["redelivered"] == 2
    [record] = [json.loads(r) for r in redis_client.lrange(Keys(redis_settings.queue).dead, 0, -1)]
    assert record["id"] == f"{tally['run']}:1" and record["deliveries"] == 3
    assert "PoisonPill" in record["reason"] and "max 3" in record["reason"]
    assert record["consumer"] == consumer.consumer_id
    assert "dead-lettered" in consumer.stdout


def test_malformed_payloads_dead_lettered_consumer_keeps_going(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    keys = Keys(redis_settings.queue)
    raw = [b"not json", b'{"v": 2}', b"\xc3\x28 bad utf-8", b'{"body": "' + b"x" * 2000 + b'"}']
    redis_client.rpush(keys.queue, *raw)
    env = env_for(redis_settings, PCQ_MAX_PAYLOAD_BYTES="1024")
    with processes(tmp_path) as start:
        consumer = start("consumer", "--drain", "--quiet", "--max-delay", "0", env=env)
        producer = start("producer", "--items", "5", "--json", env=env)
        assert producer.wait(60) == 0, producer.stderr
        assert consumer.wait(30) == 0, consumer.stderr
    tally = producer.json()
    assert (tally["consumed"], tally["lost"]) == (5, 0)
    assert tally["per_consumer"] == {consumer.consumer_id: 5}  # the same process, still going
    reasons = [json.loads(r)["reason"] for r in redis_client.lrange(keys.dead, 0, -1)]
    assert [r.split(":")[0] for r in reasons] == ["not JSON", "wrong schema", "invalid UTF-8 at byte 0", "oversize"]


def test_wrong_password_one_line_nonzero(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = redis_server.settings()
    bad = settings.with_overrides(url=settings.url.replace(redis_server.password, "hunter2"))
    with processes(tmp_path) as start:
        for module in ("producer", "consumer"):
            proc = start(module, env=env_for(bad))
            assert proc.wait(30) != 0
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and "credentials" in lines[0], proc.stderr
            assert "hunter2" not in proc.stderr + proc.stdout
            assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "url", ["http://localhost:6379", "redis://localhost:port/0", "redis://:pw@/0", "redis://h:1/db"]
)
def test_bad_redis_url_exits_2(tmp_path: Path, redis_settings: RedisSettings, url: str) -> None:
    env = env_for(redis_settings, REDIS_URL=url)
    with processes(tmp_path) as start:
        proc = start("producer", env=env)
        assert proc.wait(30) == 2
    assert proc.stderr.startswith("pcq: error: invalid REDIS_URL") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unreachable_redis_retries_then_fails(tmp_path: Path, redis_settings: RedisSettings) -> None:
    from fixtures_redis import free_port

    url = f"redis://:pw@127.0.0.1:{free_port()}/0"
    env = env_for(redis_settings, REDIS_URL=url, PCQ_REDIS_RETRIES="2")
    with processes(tmp_path) as start:
        proc = start("consumer", "--drain", env=env)
        assert proc.wait(30) == 3
    lines = proc.stderr.strip().splitlines()
    assert "unreachable (ConnectionError), retry 1/2 in" in lines[0]
    assert lines[-1].startswith("pcq: error: redis at 127.0.0.1:") and "after 2 retries" in lines[-1]
    assert "Traceback" not in proc.stderr and ":pw@" not in proc.stderr


def test_killed_producer_everything_pushed_is_consumed_and_drain_ends(
    tmp_path: Path, redis_settings: RedisSettings, redis_client: redis.Redis
) -> None:
    settings = redis_settings.with_overrides(heartbeat_ttl=1.0)  # liveness: 6 x 1 s
    env = env_for(settings)
    keys = Keys(settings.queue)
    with processes(tmp_path) as start:
        consumer = start("consumer", "--drain", "--quiet", "--batch", "50", "--max-delay", "0", env=env)
        producer = start("producer", "--items", "1000000", "--batch", "100", "--json", env=env)
        run = wait_until(lambda: only_run(redis_client, settings), 20, "the run")
        wait_until(lambda: acked_count(redis_client, keys, run) >= 500, 30, "500 acks")
        producer.signal(signal.SIGKILL)
        assert producer.wait(10) == -signal.SIGKILL
        assert redis_client.sismember(keys.open, run)  # never closed its stream
        assert consumer.wait(30) == 0, consumer.stderr  # gave up waiting once it expired
    produced = int(redis_client.hget(keys.run(run), "produced") or 0)
    assert 500 <= produced < 1_000_000
    assert ledger(redis_client, settings, run) == {f"{run}:{n}" for n in range(produced)}
    assert redis_client.hexists(keys.run(run), "abandoned_at")
    assert processing_lists(redis_client, settings) == {}
