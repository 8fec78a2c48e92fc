"""``pcq status`` / ``pcq watch`` against a real redis-server and a queue we fill."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from fixtures_redis import RedisServer, free_port
from rq import Queue
from rq.serializers import JSONSerializer

from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.rates import RateWindow
from pcq.core.transport import Item

REPO = Path(__file__).resolve().parents[1]


def pcq(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-m", "pcq.core", *args],
        cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=60,
    )


def status_json(settings: RedisSettings, rq_queue: str, *extra: str) -> dict:
    proc = pcq("status", "--json", "--redis-url", settings.url, "--queue", settings.queue,
               "--rq-queue", rq_queue, *extra)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_status_reflects_a_filled_queue(redis_server: RedisServer, redis_settings: RedisSettings) -> None:
    settings = RedisSettings(url=redis_settings.url, queue=redis_settings.queue, batch=3)
    rq_name = f"{settings.queue}-rq"
    producer_client, consumer_client = connect(settings), connect(settings)
    consumer = ListConsumer(consumer_client, settings, consumer="tester:1")
    try:
        producer = ListProducer(producer_client, settings)
        run = producer.open_run()
        producer.put([Item(f"{run}:{n}", f"name {n}", time.time()) for n in range(10)])
        producer.flush()
        producer_client.lpush(producer.keys.queue, b"not json at all")  # first in line
        queue = Queue(rq_name, connection=producer_client, serializer=JSONSerializer)
        queue.enqueue("pcq.core.compare.rq_runner.rq_handle", payload="{}", work="noop")

        before = status_json(settings, rq_name, "--window", "0")
        assert before["length"] == 11 and before["in_flight"] == 0
        assert before["consumers"] == [] and before["dead_letters"] == 0
        assert before["open_runs"] == 1 and before["items_per_second"] is None
        assert before["rq"]["length"] == 1 and before["rq"]["registries"]["failed"] == 0

        # One claim of 3: the malformed payload is dead-lettered, 2 items stay in flight.
        held = consumer.get(0.5)
        assert held is not None and len(held) == 2

        after = status_json(settings, rq_name, "--window", "0.2")
        assert after["length"] == 8 and after["in_flight"] == 2 and after["dead_letters"] == 1
        (me,) = after["consumers"]
        assert me["id"] == "tester:1" and me["alive"] and me["in_flight"] == 2
        assert 0 <= me["heartbeat_age"] < settings.heartbeat_ttl
        assert after["items_per_second"] == 0.0 and after["window_seconds"] == 0.2

        for item in held:
            consumer.ack(item)
        consumer.flush()
        consumer.beat()  # what the heartbeat thread does every second
        done = status_json(settings, rq_name)  # default: the heartbeats' own 10 s rate
        assert done["in_flight"] == 0 and done["acked_total"] == 2
        (me,) = done["consumers"]
        assert me["acked"] == 2 and me["rate"] > 0, me  # 2 acks since its first beat
        assert done["items_per_second"] == me["rate"] and 0 < done["window_seconds"] <= 10
    finally:
        consumer.close()
        producer_client.close()
        consumer_client.close()


def test_status_table_and_watch(redis_server: RedisServer, redis_settings: RedisSettings) -> None:
    proc = pcq("status", "--redis-url", redis_settings.url, "--queue", redis_settings.queue,
               "--window", "0")
    assert proc.returncode == 0, proc.stderr
    assert "queue length" in proc.stdout and "RQ queue pcq-rq" in proc.stdout
    proc = pcq("watch", "--redis-url", redis_settings.url, "--queue", redis_settings.queue,
               "--count", "2", "--interval", "0.1")
    assert proc.returncode == 0, proc.stderr
    assert "consumers alive" in proc.stdout and "last 10 s" in proc.stdout


def test_status_unreachable_is_one_line() -> None:
    proc = pcq("status", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", "--window", "0")
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0]


def test_status_bad_window_exit_2() -> None:
    proc = pcq("status", "--window", "-1")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


def test_rate_window() -> None:
    rates = RateWindow(span=10)
    assert rates.add(0.0, 0) is None
    assert rates.add(1.0, 50) == 50.0
    for t in range(2, 30):
        rate = rates.add(float(t), 50 * t)
    assert rate == 50.0
    assert rates.samples[-1][0] - rates.samples[0][0] <= 11  # only the last ~10 s are kept


def test_status_with_a_role_limited_user(redis_server: RedisServer, redis_settings: RedisSettings) -> None:
    """Like compose's `consumer` ACL user: no run ledgers (ZREVRANGE), no RQ keys."""
    user, secret = f"limited-{redis_settings.queue}", "pw-" + redis_settings.queue
    rules = ["on", f">{secret}", "resetchannels", "-@all", "+ping", "+client|setname",
             "+smembers", "+llen", "+lrange", "+scard", "+hgetall", "+get", f"~pcq:{{{redis_settings.queue}}}:*"]
    with redis_server.client() as admin:
        admin.acl_setuser(user, reset=True)
        admin.execute_command("ACL", "SETUSER", user, *rules)
        try:
            url = f"redis://{user}:{secret}@127.0.0.1:{redis_server.port}/0"
            proc = pcq("status", "--json", "--window", "0", "--redis-url", url,
                       "--queue", redis_settings.queue)
            assert proc.returncode == 0, proc.stderr
            snap = json.loads(proc.stdout)
            assert snap["length"] == 0 and snap["acked_total"] is None and snap["rq"] is None
        finally:
            admin.acl_deluser(user)


def test_rate_counts_acknowledged_items(redis_settings: RedisSettings) -> None:
    """items/s comes from the runs' ledgers: acknowledging 5 items between two samples counts 5."""
    from pcq.core.cli.status import _rate, collect

    settings = RedisSettings(url=redis_settings.url, queue=redis_settings.queue, batch=5)
    client, worker = connect(settings), connect(settings)
    consumer = ListConsumer(worker, settings, consumer="rate:1")
    try:
        producer = ListProducer(client, settings)
        run = producer.open_run()
        producer.put([Item(f"{run}:{n}", f"n{n}", time.time()) for n in range(5)])
        producer.flush()
        held = consumer.get(0.5)
        assert held is not None and len(held) == 5
        before = collect(client, settings, "none")
        taken = time.monotonic()
        for item in held:
            consumer.ack(item)
        consumer.flush()
        after = collect(client, settings, "none")
        assert after["acked_total"] - before["acked_total"] == 5
        # Both samples may fall in one millisecond: the gap is timed, not read from "at".
        rate = _rate(before, after, time.monotonic() - taken)
        assert rate is not None and rate > 0
    finally:
        consumer.close()
        client.close()
        worker.close()
