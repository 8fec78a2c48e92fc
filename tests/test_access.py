"""Access control: the compose file's Redis ACL users, one per role, on a real server.

The server runs ``docker/redis/users.acl.in`` rendered by
``docker/redis/render-acl.sh`` -- the same files the compose ``redis`` service
uses -- so these tests check the rules users get. Each role can do its job
(a whole produce/consume run, with a consumer SIGKILLed and the script cache
flushed mid-run, all under the ACL) and nothing else.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from redis.exceptions import NoPermissionError, ResponseError
from rq_helpers import Worker, worker_argv, worker_env

import pcq.core.redis_list
from pcq.core.console import Console
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.scripts import _lua
from pcq.core.redis_list.tally import retire_run
from pcq.core.rq_jobs.producer import RqOptions, produce_rq
from pcq.core.transport import Item

if TYPE_CHECKING:
    from fixtures_reliability import Crew, OwnRedis

pytest_plugins = ["fixtures_reliability"]
pytestmark = pytest.mark.timeout(180)

LUA_DIR = Path(pcq.core.redis_list.__file__).with_name("lua")
QUEUE = "acltest"  # fixtures_reliability.ACL_QUEUE: the queue the ACL was rendered for
K = Keys(QUEUE)
OTHER = Keys("someone-else")


def role_client(server: OwnRedis, role: str) -> redis.Redis:
    from fixtures_reliability import ROLE_PASSWORDS

    return redis.Redis(host="127.0.0.1", port=server.port, username=role,
                       password=ROLE_PASSWORDS[role])


def role_url(server: OwnRedis, role: str) -> str:
    from fixtures_reliability import ROLE_PASSWORDS

    return server.url_for(role, ROLE_PASSWORDS[role])


def raw(server: OwnRedis, command: bytes) -> bytes:
    """Send one RESP inline command on a fresh connection; return the reply line."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(command)
        return sock.recv(256)


def refused(call: Any, *args: Any) -> str:
    """Run a command that must be refused with NOPERM; return the error text."""
    with pytest.raises(NoPermissionError) as info:
        call(*args)
    return str(info.value)


def allowed_commands(role: str) -> set[str]:
    """The commands ``role`` is granted one by one in docker/redis/users.acl.in."""
    from fixtures_reliability import ACL_DIR

    line = next(ln for ln in (ACL_DIR / "users.acl.in").read_text().splitlines()
                if ln.startswith(f"user {role} "))
    words = line.replace("(", " ").replace(")", " ").split()
    return {w[1:].lower().split("|")[0] for w in words if w.startswith("+") and "@" not in w}


# Who runs which script (the rest: the consumer).
SCRIPT_ROLES = {
    "push": ("producer",), "close": ("producer",), "tally": ("producer",),
    "beat": ("producer", "consumer"), "retain": ("consumer", "operator"),
    "requeue": ("operator",), "purge": ("operator",),
}  # fmt: skip


@pytest.mark.parametrize("script", sorted(p.stem for p in LUA_DIR.glob("*.lua")))
def test_acl_grants_every_command_of_every_lua_script(script: str) -> None:
    """A script runs with its caller's rights: a command missing here fails in production."""
    text = _lua(script)  # with the lib/*.lua functions put in front of it
    used = {cmd.lower() for cmd in re.findall(r"redis\.p?call\(\s*'([A-Za-z]+)'", text)}
    assert used, f"no redis.call found in {script}.lua"
    for role in SCRIPT_ROLES.get(script, ("consumer",)):
        missing = used - allowed_commands(role)
        assert not missing, f"{script}.lua needs {sorted(missing)}: add them to user {role}"


def test_no_password_gets_noauth_and_the_default_user_is_off(acl_server: OwnRedis) -> None:
    assert raw(acl_server, b"PING\r\n").startswith(b"-NOAUTH"), "no password: NOAUTH"
    assert raw(acl_server, b"GET pcq:{acltest}:queue\r\n").startswith(b"-NOAUTH")
    # AUTH with a password alone means the default user: disabled, whatever the password.
    reply = raw(acl_server, f"AUTH {acl_server.password}\r\n".encode())
    assert reply.startswith(b"-WRONGPASS"), reply
    with role_client(acl_server, "admin") as admin:
        default = next(line for line in admin.acl_list() if line.startswith("user default "))
    assert " off " in default and "-@all" in default, default


@pytest.mark.parametrize("role", ["consumer", "producer", "rq", "operator"])
def test_no_role_may_reconfigure_flush_or_enumerate(acl_server: OwnRedis, role: str) -> None:
    with role_client(acl_server, role) as client:
        assert client.ping()
        refused(client.config_get, "*")
        refused(client.config_set, "appendonly", "no")
        refused(client.flushall)
        refused(client.flushdb)
        refused(client.keys, "*")
        refused(client.acl_list)
        refused(client.execute_command, "SHUTDOWN", "NOSAVE")


def test_consumer_may_not_eval_nor_escape_its_queue(acl_server: OwnRedis) -> None:
    with role_client(acl_server, "consumer") as client:
        refused(client.eval, "return 1", 0)
        refused(client.get, OTHER.queue)
        refused(client.lpush, "rq:queue:" + QUEUE, "x")
        # Scripts run with the caller's rights: a loaded script cannot do more.
        sha = client.script_load("return redis.call('FLUSHALL')")
        with pytest.raises(ResponseError, match="can't run this command"):
            client.evalsha(sha, 0)
        sha = client.script_load("return redis.call('GET', KEYS[1])")
        with pytest.raises(ResponseError, match="(?i)no permissions to access"):
            client.evalsha(sha, 1, OTHER.queue)
        assert client.llen(K.queue) == 0  # its own queue: allowed


def test_producer_may_only_push_to_its_queue(acl_server: OwnRedis) -> None:
    with role_client(acl_server, "producer") as client:
        assert client.rpush(K.queue, b"x") == 1
        refused(client.lpop, K.queue)
        refused(client.lrange, K.queue, 0, -1)
        refused(client.blmove, K.queue, K.processing("me"), 0.1, "LEFT", "RIGHT")
        refused(client.delete, K.queue)
        refused(client.rpush, OTHER.queue, b"x")
        refused(client.rpush, K.dead, b"x")
        refused(client.sadd, K.consumers, "fake")
        refused(client.eval, "return 1", 0)
        # Retiring a finished run: EXPIRE on run keys and trimming the run index only.
        retire_run(client, K, "r1", 60)
        refused(client.expire, K.queue, 1)
        refused(client.expire, K.dead, 1)
        refused(client.zremrangebyscore, K.open, "-inf", "+inf")
    with role_client(acl_server, "admin") as admin:
        admin.delete(K.queue)


def test_a_whole_run_works_under_the_acl(acl_server: OwnRedis, crew: Any) -> None:
    """Produce, consume, reap a SIGKILLed consumer, reload flushed scripts: all as roles."""
    settings = RedisSettings(url=role_url(acl_server, "consumer"), queue=QUEUE,
                             heartbeat_ttl=1.0, batch=5, high_water=100)
    team: Crew = crew(settings)
    (team.dir / "slow").touch()
    doomed = team.consumer(delay=0.005)
    team.consumer(delay=0.005)
    producer = team.producer(400, REDIS_URL=role_url(acl_server, "producer"), PCQ_BATCH="20")
    deadline = time.monotonic() + 60
    while len(team.ledger.handled_ids()) < 60:
        assert time.monotonic() < deadline, team.logs()[-3000:]
        time.sleep(0.05)
    doomed.kill()  # its items must be reaped by the other consumer, under the ACL
    with acl_server.client() as admin:
        admin.script_flush()  # as after a Redis restart: NOSCRIPT, then SCRIPT LOAD
    (team.dir / "slow").unlink()
    assert team.wait_all([producer], 60) == [0], team.logs()[-3000:]
    spared = [p for p in team.consumers if p is not doomed]  # running, or drained already
    assert team.wait_all(spared, 60) == [0], team.logs()[-3000:]

    with acl_server.client() as admin:
        left = team.leftovers(admin)
    assert "NOPERM" not in team.logs() and "permission" not in team.logs().lower()
    assert left == {"queue": 0, "processing": {}, "consumers": []}, left
    report = team.ledger.report()
    print(report.summary())
    report.assert_sound(duplicates_allowed=5)  # at most the killed consumer's batch
    assert report.produced == 400


def test_rq_mode_works_under_the_acl(acl_server: OwnRedis) -> None:
    url = role_url(acl_server, "rq")
    settings = RedisSettings(url=url, queue=QUEUE, max_deliveries=2)
    worker = Worker(worker_argv(url, name="acl-w", burst=False, queue=QUEUE), worker_env())
    try:
        conn = redis.Redis.from_url(url)
        items = [Item(f"aclrun:{n}", f"name {n}", time.time()) for n in range(20)]
        tally = produce_rq(conn, settings, items, Console(quiet=True), "aclrun",
                           RqOptions(wait_timeout=60))
        conn.close()
    finally:
        worker.close()
    assert tally["complete"] is True, (tally, worker.output[-3000:])
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (20, 20, 0), tally
    assert "NOPERM" not in worker.output, worker.output[-3000:]
    with role_client(acl_server, "rq") as client:
        refused(client.rpush, K.queue, b"x")  # the list mode's keys are not RQ's
