"""The monitoring view (pcq.core.monitor) against a real redis-server: what it reads, what a
limited ACL user gets, dead consumers kept on show, and the queue gauges for Prometheus."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from fixtures_redis import RedisServer
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis_procs import Proc, env_for, wait_until

from pcq.core.monitor.gauges import ViewCollector
from pcq.core.monitor.history import ViewHistory
from pcq.core.monitor.view import read_view
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item

if TYPE_CHECKING:
    from fixtures_reliability import OwnRedis

pytest_plugins = ["fixtures_reliability"]


def fill(settings: RedisSettings, client: redis.Redis, count: int) -> str:
    """One run of ``count`` items, the last one poison; the run's stream closed."""
    producer = ListProducer(client, settings)
    run = producer.open_run()
    bodies = [f"name {n}" for n in range(count - 1)] + ["poison pill"]
    producer.put([Item(f"{run}:{n}", body, time.time()) for n, body in enumerate(bodies)])
    producer.end_stream()
    return run


def test_view_of_a_run_with_a_dead_letter(redis_server: RedisServer) -> None:
    settings = redis_server.settings(heartbeat_ttl=2.0, max_deliveries=1, batch=4)
    client, worker = connect(settings), connect(settings)
    consumer = ListConsumer(worker, settings, consumer="view:1")
    try:
        run = fill(settings, client, 10)
        held = list(consumer.get(0.5) or [])
        assert len(held) == 4
        view = read_view(client, settings, "pcq-rq")
        assert view["length"] == 6 and view["in_flight"] == 4 and view["unavailable"] == []
        (me,) = view["consumers"]
        assert (me["id"], me["host"], me["pid"], me["state"]) == ("view:1", "view", 1, "alive")
        assert view["consumers_alive"] == 1 and view["rq"]["queue"] == "pcq-rq"
        for item in held:
            consumer.ack(item)
        while (batch := consumer.get(0.2)):
            for item in batch:
                if item.body.startswith("poison"):
                    consumer.nack(item, "ValueError: poisoned")
                else:
                    consumer.ack(item)
        consumer.flush()
        view = read_view(client, settings, "pcq-rq")
        assert view["length"] == 0 and view["in_flight"] == 0 and view["dead_letters"] == 1
        (tally,) = view["runs"]
        assert tally["run"] == run and tally["produced"] == 10 and tally["consumed"] == 9
        assert tally["dead_letters"] == 1 and tally["lost"] == 0 and tally["closed"]
        (dead,) = view["recent_dead_letters"]
        assert dead["id"] == f"{run}:9" and "poisoned" in dead["reason"] and "payload" not in dead
        assert view["acked_total"] == 9
    finally:
        consumer.close()
        client.close()
        worker.close()


def test_a_dead_consumer_is_shown_dead_then_kept_after_the_reaper(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """SIGKILLed holding an item: dead while registered, and still shown dead once reaped."""
    settings = redis_server.settings(heartbeat_ttl=1.0)
    client = connect(settings)
    history = ViewHistory(settings.heartbeat_ttl)
    victim = Proc("consumer", ["--quiet", "--max-delay", "30"], env_for(settings), tmp_path)
    try:
        fill(settings, client, 3)

        def states() -> dict[str, tuple[str, int]]:
            view = history.add(read_view(client, settings, "pcq-rq"))
            return {c["id"]: (c["state"], c["in_flight"]) for c in view["consumers"]}

        wait_until(lambda: states() == {victim.consumer_id: ("alive", 1)}, 30, "a busy consumer")
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        wait_until(lambda: states() == {victim.consumer_id: ("dead", 1)}, 10, "shown dead")
        reaper = ListConsumer(connect(settings), settings, consumer="reaper:9")
        assert reaper.reap()[:2] == (1, 1)
        reaper.link.client.close()
        view = history.add(read_view(client, settings, "pcq-rq"))
        assert [(c["id"], c["state"]) for c in view["consumers"]] == [(victim.consumer_id, "dead")]
        assert view["consumers_alive"] == 0 and view["length"] == 3 and view["in_flight"] == 0
        assert len(view["series"]) >= 3  # the chart's points
    finally:
        victim.stop()
        client.close()


def test_history_tells_a_stopped_consumer_from_a_dead_one() -> None:
    history = ViewHistory(heartbeat_ttl=5.0)

    def view(at: float, *consumers: dict) -> dict:
        return {"at": at, "length": 0, "acked_total": 0, "consumers": list(consumers)}

    live = {"id": "a:1", "alive": True, "state": "alive", "heartbeat_age": 0.4, "in_flight": 0,
            "acked": 3}
    late = {"id": "b:2", "alive": True, "state": "alive", "heartbeat_age": 4.5, "in_flight": 1,
            "acked": 5}
    history.add(view(100.0, live, late))
    shown = history.add(view(101.0))  # both gone one second later
    assert {c["id"]: c["state"] for c in shown["consumers"]} == {"a:1": "stopped", "b:2": "dead"}
    shown = history.add(view(102.0, live))  # a:1 is back (same id, new process)
    assert {c["id"]: c["state"] for c in shown["consumers"]} == {"a:1": "alive", "b:2": "dead"}
    assert history.add(view(1000.0, live))["consumers"] == [live]  # kept 300 s, then dropped


def test_a_limited_user_sees_what_it_may(acl_server: OwnRedis) -> None:
    """Compose's read-only `monitor` user reads it all; the `consumer` user gets 'unavailable'."""
    from fixtures_reliability import ACL_QUEUE, ROLE_PASSWORDS

    admin = RedisSettings(url=acl_server.url_for("admin", ROLE_PASSWORDS["admin"]), queue=ACL_QUEUE)
    with connect(admin) as client:
        fill(admin, client, 3)
    # The consumer may not read dead letters either (it only appends them: docs/dead-letters.md).
    consumer_cannot = ["acked_total", "runs", "recent_dead_letters", "rq"]
    for role, unavailable in [("monitor", []), ("consumer", consumer_cannot)]:
        settings = RedisSettings(url=acl_server.url_for(role, ROLE_PASSWORDS[role]), queue=ACL_QUEUE)
        with connect(settings) as client:
            view = read_view(client, settings, "pcq-rq")
            assert view["length"] == 3 and view["unavailable"] == unavailable, (role, view)
            assert (view["runs"] is None) == (role == "consumer")
            if role == "monitor":  # read-only: it may look, never change
                try:
                    client.rpush(Keys(ACL_QUEUE).queue, b"x")
                except redis.exceptions.NoPermissionError:
                    pass
                else:
                    raise AssertionError("the monitor user could write to the queue")


def test_queue_gauges_come_from_the_view(redis_server: RedisServer) -> None:
    settings = redis_server.settings()
    with connect(settings) as client:
        fill(settings, client, 5)
        view = read_view(client, settings, "pcq-rq")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ViewCollector(lambda: view))
    samples = {
        (s.name, s.labels.get("registry")): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }
    assert samples[("pcq_queue_length", None)] == 5
    assert samples[("pcq_queue_open_streams", None)] == 0
    assert samples[("pcq_queue_consumers_alive", None)] == 0
    assert samples[("pcq_queue_dead_letters", None)] == 0
    assert samples[("pcq_rq_registry_jobs", "failed")] == 0
    assert ("pcq_queue_items_per_second", None) not in samples  # no rate yet: no sample
