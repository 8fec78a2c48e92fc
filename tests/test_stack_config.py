"""docker-stack*.yml and docker-compose.yml describe the same services.

Stack deploy cannot take the compose file as it is (docker-stack.yml's header
says why), so the two are separate files that could drift apart. This test
renders both with Docker's own tools -- ``docker compose config`` and ``docker
stack config`` (client side: no engine, no swarm needed) -- and compares, per
service: image, command, environment variable names, user, read-only root,
init, dropped capabilities, healthcheck command and stop grace period.

The differences allowed, on purpose (also in docs/multi-node.md):

* services only in compose: ``rq-producer`` and ``dashboard`` (on a swarm the
  RQ producer is a one-off container; the dashboards get a stack file of their
  own, see docker-stack.yml's header);
* the stack's clients speak TLS to Redis: every stack service has
  ``PCQ_REDIS_CA_FILE`` (compose stays on one host, on an internal bridge);
* the stack's Redis command is compose's plus the TLS arguments (:data:`TLS_ARGS`);
* environment *values* (rediss:// URLs) are not compared, only names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
STACK_FILES = ("docker-stack.yml", "docker-stack.producer.yml", "docker-stack.rq.yml")
COMPOSE_ONLY = {"rq-producer", "dashboard"}
STACK_ONLY_ENV = {"PCQ_REDIS_CA_FILE"}
TLS_ARGS = [
    "--port", "0", "--tls-port", "6379",
    "--tls-cert-file", "/run/secrets/redis-tls.crt",
    "--tls-key-file", "/run/secrets/redis-tls.key",
    "--tls-ca-cert-file", "/run/secrets/pcq-ca.crt",
    "--tls-auth-clients", "no",
]  # fmt: skip


def _clean_env() -> dict[str, str]:
    # Defaults on both sides: no PCQ_* knob of the caller's shell leaks in.
    return {k: v for k, v in os.environ.items() if not k.startswith(("PCQ_", "COMPOSE_"))}


def _run(cmd: list[str]) -> str:
    if shutil.which("docker") is None:
        pytest.skip("needs the docker CLI (docker compose config, docker stack config)")
    proc = subprocess.run(cmd, cwd=REPO, env=_clean_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def compose_services() -> dict[str, Any]:
    out = _run(["docker", "compose", "-p", "pcq-config-check", "--profile", "rq",
                "--profile", "dashboard", "config", "--format", "json"])
    services: dict[str, Any] = json.loads(out)["services"]
    return services


def stack_services() -> dict[str, Any]:
    files = [arg for name in STACK_FILES for arg in ("-c", name)]
    services: dict[str, Any] = yaml.safe_load(_run(["docker", "stack", "config", *files]))["services"]
    return services


def _seconds(value: Any) -> float:
    """'10s', '1m30s' or nanoseconds (compose's JSON) as seconds."""
    if isinstance(value, (int, float)):
        return value / 1e9
    text, total, num = str(value), 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            num += ch
        else:
            total += float(num) * {"h": 3600, "m": 60, "s": 1}[ch]
            num = ""
    return total


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return [str(arg) for arg in command]


def normalise(service: dict[str, Any], *, stack: bool) -> dict[str, Any]:
    """The fields both files must agree on, in one shape."""
    env = set((service.get("environment") or {}).keys())
    if stack:
        env -= STACK_ONLY_ENV
    health = service.get("healthcheck") or {}
    return {
        "image": service.get("image"),
        "command": _command(service),
        "environment": sorted(env),
        "user": service.get("user"),
        "read_only": bool(service.get("read_only")),
        "init": bool(service.get("init")),
        "cap_drop": sorted(service.get("cap_drop") or []),
        # `docker compose config` keeps a literal `$` escaped as `$$`; `docker stack
        # config` prints it plain: one spelling before comparing.
        "healthcheck": [part.replace("$$", "$") for part in health.get("test") or []] or None,
        "stop_grace_period": _seconds(service.get("stop_grace_period", "10s")),
    }


def differences(compose: dict[str, Any], stack: dict[str, Any]) -> list[str]:
    """What differs beyond the allowed list (module docstring); empty when in step."""
    found = []
    missing = set(compose) - set(stack) - COMPOSE_ONLY
    found += [f"{name}: in compose, not in the stack files" for name in sorted(missing)]
    found += [f"{name}: in the stack files, not in compose" for name in sorted(set(stack) - set(compose))]
    for name in sorted(set(compose) & set(stack)):
        ours, theirs = normalise(compose[name], stack=False), normalise(stack[name], stack=True)
        if name == "redis":
            ours["command"] = ours["command"] + TLS_ARGS
        for key in ours:
            if ours[key] != theirs[key]:
                found.append(f"{name}.{key}: compose {ours[key]!r} != stack {theirs[key]!r}")
    return found


def test_stack_files_agree_with_the_compose_file() -> None:
    compose, stack = compose_services(), stack_services()
    assert {"redis", "consumer", "producer", "rq-worker"} <= set(stack), sorted(stack)
    assert differences(compose, stack) == []


def test_the_comparison_catches_drift() -> None:
    compose, stack = compose_services(), stack_services()
    stack["consumer"]["environment"]["PCQ_NEW_KNOB"] = "1"
    stack["consumer"]["command"] = ["pcq", "consume", "--drain"]
    del stack["rq-worker"]
    found = differences(compose, stack)
    assert any(f.startswith("consumer.environment") for f in found), found
    assert any(f.startswith("consumer.command") for f in found), found
    assert "rq-worker: in compose, not in the stack files" in found, found


def test_stack_services_use_dnsrr_and_swarm_secrets() -> None:
    stack = stack_services()
    for name, service in stack.items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", name
        env = service.get("environment") or {}
        assert not any("PASSWORD" in k and not k.endswith("_FILE") for k in env), (name, env)
        assert str(env.get("REDIS_URL", "rediss://")).startswith("rediss://"), (name, env)
    placement = stack["redis"]["deploy"]["placement"]
    assert placement["constraints"] == ["node.labels.pcq.redis == true"]
    assert stack["producer"]["deploy"]["mode"] == "replicated-job"
    assert stack["consumer"]["deploy"]["placement"]["preferences"] == [{"spread": "node.id"}]


def _acl_password_files() -> set[str]:
    """The password files docker/redis/render-acl.sh reads (one per ACL user)."""
    script = (REPO / "docker" / "redis" / "render-acl.sh").read_text(encoding="utf-8")
    return set(re.findall(r"redis-[a-z]+-password", script))


def test_redis_gets_every_password_file_its_acl_reads() -> None:
    # A stack Redis without one of them exits 2 on start (render-acl.sh) and
    # swarm restarts it forever: this was a real failure (operator, monitor).
    files = _acl_password_files()
    assert {"redis-admin-password", "redis-operator-password", "redis-monitor-password"} <= files
    targets = {s["target"] for s in stack_services()["redis"]["secrets"]}
    assert files <= targets, sorted(files - targets)
    docs = yaml.safe_load_all((REPO / "k8s" / "redis.yaml").read_text(encoding="utf-8"))
    workload = next(d for d in docs if d["kind"] == "StatefulSet")
    mounts = [m["mountPath"] for m in workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]]
    assert {f"/run/secrets/{f}" for f in files} <= set(mounts), sorted(mounts)

