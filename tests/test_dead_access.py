"""The ``operator`` ACL user (``pcq dead``) and the other roles' reach into the dead list.

On a redis-server running the compose file's ACL (``docker/redis/users.acl.in``
rendered by ``render-acl.sh``, queue ``acltest``): dead letters are made by a
consumer under its own user, then listed, shown, requeued and purged as the
operator; the operator can do nothing else, and the consumer and producer can
neither read, requeue nor delete dead letters (the consumer may append records
and trim by retention, what its scripts need).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest
from fixtures_redis import quiet
from redis.exceptions import NoPermissionError, ResponseError
from test_access import QUEUE, K, refused, role_client, role_url

from pcq.consumer.run import run_consumer
from pcq.core import cli
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item

if TYPE_CHECKING:
    from fixtures_reliability import OwnRedis

pytest_plugins = ["fixtures_reliability"]
pytestmark = pytest.mark.timeout(120)


def make_dead_letters(server: OwnRedis, count: int) -> str:
    """Produce as `producer`, fail every item as `consumer`: ``count`` dead letters."""
    produce = RedisSettings(url=role_url(server, "producer"), queue=QUEUE)
    client = connect(produce)
    producer = ListProducer(client, produce)
    run = producer.open_run()
    producer.put([Item(f"{run}:{n}", f"poison {n}", time.time()) for n in range(count)])
    producer.end_stream()
    producer.close()
    client.close()

    def fail(item: Item) -> None:
        raise ValueError("no")

    consume = RedisSettings(url=role_url(server, "consumer"), queue=QUEUE, max_deliveries=1,
                            heartbeat_ttl=2.0, dead_max=count)
    run_consumer(consume, quiet(), drain=True, handler=fail, poll=0.1)
    return run


def operator(capsys: pytest.CaptureFixture[str], server: OwnRedis, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli.main(["dead", *args, "--queue", QUEUE, "--redis-url", role_url(server, "operator")])
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_operator_lists_shows_requeues_and_purges(acl_server: OwnRedis, capsys: Any) -> None:
    run = make_dead_letters(acl_server, 4)
    code, out, err = operator(capsys, acl_server, "list", "--json")
    assert code == 0, err
    assert [d["id"] for d in json.loads(out)["letters"]] == [f"{run}:{n}" for n in (3, 2, 1, 0)]
    code, out, err = operator(capsys, acl_server, "show", f"{run}:1")
    assert code == 0 and "poison 1" in out, err
    code, out, err = operator(capsys, acl_server, "requeue", f"{run}:0", f"{run}:1")
    assert code == 0 and "requeued 2 of 2" in out, err
    code, out, err = operator(capsys, acl_server, "purge", "--all", "--yes")
    assert code == 0 and "purged 2" in out, err
    with role_client(acl_server, "admin") as admin:
        assert admin.llen(K.queue) == 2 and admin.llen(K.dead) == 0
        assert admin.hget(K.run(run), "requeued") == b"2"
        admin.delete(K.queue)
    assert "NOPERM" not in out + err


def test_operator_may_touch_nothing_but_dead_letters(acl_server: OwnRedis) -> None:
    with role_client(acl_server, "operator") as client:
        assert client.llen(K.dead) == 0 and client.lrange(K.dead, 0, -1) == []
        refused(client.lrange, K.queue, 0, -1)
        refused(client.blmove, K.queue, K.processing("me"), 0.1, "LEFT", "RIGHT")
        refused(client.delete, K.queue)
        refused(client.delete, K.dead)
        refused(client.rpush, K.dead, b"forged")
        refused(client.get, K.heartbeat("c"))
        refused(client.smembers, K.consumers)
        refused(client.hset, K.run("r"), "produced", 0)
        refused(client.eval, "return 1", 0)
        sha = client.script_load("return redis.call('LRANGE', KEYS[1], 0, -1)")
        with pytest.raises((ResponseError, NoPermissionError)):
            client.evalsha(sha, 1, K.queue)  # a script cannot do more than its caller


def test_consumer_and_producer_cannot_read_requeue_or_delete_dead_letters(
    acl_server: OwnRedis,
) -> None:
    make_dead_letters(acl_server, 1)
    with role_client(acl_server, "consumer") as client:
        assert client.llen(K.dead) == 1  # `pcq status` counts them
        refused(client.lrange, K.dead, 0, -1)
        refused(client.lrem, K.dead, 1, b"x")
        refused(client.lpop, K.dead)
        refused(client.delete, K.dead)
        refused(client.lpush, K.dead, b"x")
        sha = client.script_load("return redis.call('LRANGE', KEYS[1], 0, -1)")
        with pytest.raises((ResponseError, NoPermissionError)):
            client.evalsha(sha, 1, K.dead)
    with role_client(acl_server, "producer") as client:
        refused(client.lrange, K.dead, 0, -1)
        refused(client.llen, K.dead)
        refused(client.rpush, K.dead, b"x")
