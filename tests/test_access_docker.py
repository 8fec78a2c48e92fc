"""Access control in the compose project: each service talks to Redis as its own user.

``tests/test_access.py`` checks the ACL rules themselves on a host server; this
checks the wiring in ``docker-compose.yml``: Redis really runs with that ACL,
the default user is off, each service holds only its own role's password, and
a consumer container gets ``NOPERM`` for what its role may not do. (Redis's
container hardening and its port being unreachable from the host are checked
in ``tests/test_docker.py``.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fixtures_docker import ComposeProject
from no_secrets import exposed, passwords

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

# Run inside a consumer container: what its role may and may not do.
PROBE = r"""
import os, socket
import redis
from redis.exceptions import NoPermissionError, ResponseError

def raw(cmd):
    with socket.create_connection(("redis", 6379), 5) as s:
        s.sendall(cmd)
        return s.recv(200).decode().split()[0]

print("anonymous", raw(b"PING\r\n"))
print("default", raw(b"AUTH " + os.environ["PROBE_ADMIN"].encode() + b"\r\n"))
r = redis.Redis.from_url(os.environ["REDIS_URL"],
                         password=open(os.environ["PCQ_REDIS_PASSWORD_FILE"]).read().strip())
print("ping", r.ping())
for name, call in [("config", lambda: r.config_get("*")), ("flushall", r.flushall),
                   ("keys", lambda: r.keys("*")), ("eval", lambda: r.eval("return 1", 0)),
                   ("other-queue", lambda: r.get("pcq:{other}:queue"))]:
    try:
        call()
        print(name, "ALLOWED")
    except NoPermissionError:
        print(name, "NOPERM")
    except ResponseError as exc:
        print(name, "ERROR", exc)
"""


def env_of(container: Any) -> dict[str, str]:
    return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])


def test_services_use_their_own_redis_users(compose_project: ComposeProject) -> None:
    (consumer, *_) = compose_project.up()
    admin = compose_project.password  # REDIS_PASSWORD: the admin user's password

    # Redis runs with the ACL: the default user is off, the roles exist.
    (redis,) = compose_project.containers("redis")
    listing = redis.exec_run(["redis-admin", "ACL", "LIST"])
    assert listing.exit_code == 0, listing.output
    users = {line.split()[1]: line for line in listing.output.decode().splitlines()}
    assert set(users) >= {"default", "admin", "producer", "consumer", "rq"}, users
    assert " off " in users["default"]

    # Each service holds its own role's user and password file, never the admin password.
    env = env_of(consumer)
    assert env["REDIS_URL"] == "redis://consumer@redis:6379/0", env["REDIS_URL"].split("@")[-1]
    assert env["PCQ_REDIS_PASSWORD_FILE"] == "/run/secrets/redis-consumer-password"
    assert admin not in "".join(env.values())
    producer = compose_project.start_producer("--items", "1")
    try:
        producer_env = env_of(producer)
    finally:
        run = compose_project.finish_producer(producer)
    assert run.exit_code == 0 and run.tally["lost"] == 0, run.stderr[-2000:]
    assert producer_env["REDIS_URL"] == "redis://producer@redis:6379/0"
    assert admin not in "".join(producer_env.values())

    # And the consumer role is refused what it may not do.
    probe = consumer.exec_run(["python", "-c", PROBE], environment={"PROBE_ADMIN": admin})
    out = probe.output.decode()
    assert probe.exit_code == 0, out
    lines = dict(line.split(" ", 1) for line in out.strip().splitlines())
    assert lines["anonymous"] == "-NOAUTH", out
    assert lines["default"] == "-WRONGPASS", out
    assert lines["ping"] == "True", out  # its own credentials work
    for command in ("config", "flushall", "keys", "eval", "other-queue"):
        assert lines[command] == "NOPERM", out


def test_no_password_in_docker_inspect_or_ps(compose_project: ComposeProject) -> None:
    """Every container of the project, a producer included: no password in its
    settings (``docker inspect``) nor in any process's argv or environment."""
    compose_project.up()
    secrets = passwords(Path(compose_project.env["PCQ_SECRETS_DIR"]))
    producer = compose_project.start_producer("--items", "200", "--timeout", "120")
    try:
        containers = [*compose_project.containers("redis"), *compose_project.containers("consumer"),
                      producer]
        found = [where for c in containers for where in exposed(c, secrets)]
    finally:
        run = compose_project.finish_producer(producer)
    assert run.exit_code == 0 and run.tally["lost"] == 0, run.stderr[-2000:]
    assert len(containers) == 5, containers
    assert found == [], found
    # And the check can fail: a password put in a process's environment is found.
    (consumer, *_) = compose_project.containers("consumer")
    planted = next(iter(secrets.values()))
    probe = consumer.exec_run(["sh", "-c", f"PLANTED={planted} sleep 5 & sleep 0.5; exit 0"])
    assert probe.exit_code == 0
    assert exposed(consumer, secrets), "a planted password went unnoticed"
