"""Swarm fixtures: this engine as a swarm manager, with or without simulated worker nodes.

``../shared/containers/swarm-nodes up N IMAGE...`` makes this engine a swarm
manager and starts N worker nodes (docker-in-docker containers ``swarm-node-i``,
hostname ``node-i``), loading the test images into each; ``swarm-nodes down``
puts the engine back in plain mode. Tests hold the swarm only while they run
(other test runs share this engine) and always take it down, whatever happens.

A :class:`Stack` is ``docker-stack.yml`` plus ``tests/stack-ledger.yml`` under
a private stack name (``pcqs-<hex>``), with secrets of its own (``scripts/secrets
init``), Redis pinned to the manager (node label ``pcq.redis=true``) and the
producer as a one-off container on the stack's attachable overlay network (on
the manager, so its ledger and tally land on this host). Each consumer keeps
its ledger on its own node (a bind mount of the same path on every node);
:meth:`Stack.audit` gathers the files from all nodes into one ledger.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from audit import Audit
from fixtures_docker import (
    PRODUCE_TIMEOUT,
    REPO,
    TEST_IMAGE,
    TEST_REDIS_IMAGE,
    Produced,
    docker_unavailable,
    make_secrets,
    parse_tally,
)

SWARM_NODES = REPO.parent / "shared" / "containers" / "swarm-nodes"
STACK_FILES = (REPO / "docker-stack.yml", Path(__file__).with_name("stack-ledger.yml"))
QUEUE = "pcqswarm"
PREFIX = f"pcq:{{{QUEUE}}}"


def sh(*cmd: str, timeout: float = 120.0, check: bool = True,
       env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout (an AssertionError with its output if it failed)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def swarm_problem() -> str | None:
    """Why swarm tests cannot run here, or None."""
    if not os.access(SWARM_NODES, os.X_OK):
        return f"{SWARM_NODES} (simulated swarm nodes) is not here"
    if os.geteuid() != 0:
        return "swarm-nodes needs root"
    state = sh("docker", "info", "-f", "{{.Swarm.LocalNodeState}}", check=False).strip()
    if state != "inactive":
        return f"this engine's swarm state is {state!r}: another run holds the swarm"
    return None


@contextmanager
def swarm(workers: int) -> Iterator[list[str]]:
    """This engine as manager plus ``workers`` simulated nodes; the node containers' names."""
    if problem := swarm_problem():
        docker_unavailable(problem)
    try:
        # Workers need the pcq image only: Redis is pinned to this engine.
        sh(str(SWARM_NODES), "up", str(workers), *([TEST_IMAGE] if workers else []),
           timeout=600)
        me = sh("docker", "info", "-f", "{{.Swarm.NodeID}}").strip()
        sh("docker", "node", "update", "--label-add", "pcq.redis=true", me)
        yield [f"swarm-node-{i}" for i in range(1, workers + 1)]
    finally:
        sh(str(SWARM_NODES), "down", timeout=300, check=False)


def in_node(node: str | None, *cmd: str, timeout: float = 60.0, check: bool = True) -> str:
    """Run ``cmd`` on a node: this host for None, else inside the node container."""
    full = list(cmd) if node is None else ["docker", "exec", node, *cmd]
    return sh(*full, timeout=timeout, check=check)


class Stack:
    """docker-stack.yml deployed under a private name (see the module docstring)."""

    def __init__(self, client: Any, nodes: list[str], **env: str) -> None:
        self.client = client
        self.nodes = nodes
        self.name = f"pcqs-{secrets.token_hex(4)}"
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.ledger = self.work / "ledger"  # the same path on every node
        self.secrets = make_secrets()
        self.env = dict(
            os.environ, PCQ_IMAGE=TEST_IMAGE, PCQ_REDIS_IMAGE=TEST_REDIS_IMAGE,
            PCQ_SECRETS_DIR=str(self.secrets), PCQ_TEST_LEDGER=str(self.ledger),
            PCQ_QUEUE=QUEUE, PCQ_BATCH="5", PCQ_MAX_DELAY="0.05", PCQ_HEARTBEAT_TTL="3",
            PCQ_HIGH_WATER="1000", PCQ_STOP_GRACE="10s", PCQ_ITEMS="",
        )
        self.env.update(env)
        self._runs = 0
        self._acked_before: set[str] = set()
        self.owner: dict[str, str] = {}  # container id (12) -> node hostname

    # Lifecycle -------------------------------------------------------------------
    def deploy(self) -> float:
        """Deploy; seconds from ``stack deploy`` until every consumer is running (healthy)."""
        for node in (None, *self.nodes):
            in_node(node, "mkdir", "-p", "-m", "0777", str(self.ledger))
            in_node(node, "chmod", "0777", str(self.ledger))
        files = [arg for path in STACK_FILES for arg in ("-c", str(path))]
        started = time.monotonic()
        sh("docker", "stack", "deploy", "--resolve-image", "never", *files, self.name,
           env=self.env, timeout=180)
        self.wait_consumers(int(self.env.get("PCQ_CONSUMERS", "3")), timeout=180)
        self.wait_redis()
        return time.monotonic() - started

    def remove(self) -> None:
        """``docker stack rm``, then wait until its containers and network are gone."""
        sh("docker", "stack", "rm", self.name, check=False, timeout=120)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            left = sh("docker", "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={self.name}",
                      check=False).split()
            nets = sh("docker", "network", "ls", "-q", "--filter", f"name={self.name}_",
                      check=False).split()
            if not left and not nets:
                break
            time.sleep(0.5)
        sh("docker", "volume", "rm", f"{self.name}_redis-data", check=False)
        for node in self.nodes:
            in_node(node, "rm", "-rf", str(self.work), check=False)
        shutil.rmtree(self.work, ignore_errors=True)

    # Tasks -----------------------------------------------------------------------
    def service(self, name: str) -> Any:
        return self.client.services.get(f"{self.name}_{name}")

    def tasks(self, name: str = "consumer") -> list[dict[str, Any]]:
        """Tasks meant to run, with ``state``, ``node`` (hostname) and ``container`` (12)."""
        found = []
        for task in self.service(name).tasks(filters={"desired-state": "running"}):
            node_id = task.get("NodeID")  # none yet while the task is pending
            node = self.client.nodes.get(node_id).attrs["Description"]["Hostname"] if node_id else "?"
            cid = task["Status"].get("ContainerStatus", {}).get("ContainerID", "")[:12]
            if cid:
                self.owner[cid] = node
            found.append({"state": task["Status"]["State"], "node": node, "container": cid})
        return found

    def running(self, name: str = "consumer") -> list[dict[str, Any]]:
        return [t for t in self.tasks(name) if t["state"] == "running"]

    def wait_consumers(self, count: int, timeout: float = 120.0, *,
                       avoid: str | None = None) -> float:
        """Wait until exactly ``count`` consumer tasks run (healthy), none on ``avoid``."""
        started = time.monotonic()
        while True:
            run = self.running()
            if len(run) == count and len(self.tasks()) == count and all(
                    t["node"] != avoid for t in run):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"wanted {count} running consumers, have {self.tasks()}")
            time.sleep(0.3)

    def wait_redis(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.running("redis"):
            assert time.monotonic() < deadline, f"redis not running: {self.tasks('redis')}"
            time.sleep(0.3)

    def scale(self, consumers: int) -> float:
        sh("docker", "service", "scale", "--detach", f"{self.name}_consumer={consumers}")
        return self.wait_consumers(consumers)

    def containers(self, service: str) -> list[Any]:
        """This host's running containers of one of the stack's services."""
        label = f"com.docker.swarm.service.name={self.name}_{service}"
        return list(self.client.containers.list(filters={"label": label}))

    def redis_cli(self, *args: str) -> list[str]:
        (redis,) = self.containers("redis")
        result = redis.exec_run(["redis-admin", *args])
        assert result.exit_code == 0, result.output[-500:]
        return list(result.output.decode().splitlines())

    # Producer ----------------------------------------------------------------------
    def acked_sets(self) -> set[str]:
        """The runs' acked bitmaps (keys): where their items' acknowledgements go."""
        return {k for k in self.redis_cli("--scan", "--pattern", f"{PREFIX}:run:*:bits") if k}

    def wait_progress(self, at_least: int, timeout: float = 60.0) -> None:
        """Wait until the run started last has ``at_least`` items acknowledged."""
        deadline = time.monotonic() + timeout
        while True:
            new = self.acked_sets() - self._acked_before
            if new and int(self.redis_cli("BITCOUNT", next(iter(new)))[0]) >= at_least:
                return
            assert time.monotonic() < deadline, f"not {at_least} items acknowledged in {timeout}s"
            time.sleep(0.2)

    def reset_ledger(self) -> None:
        """Empty the ledger files on every node: one run's records per audit. Truncated,
        not removed: running consumers keep their ledger file open (O_APPEND)."""
        empty = f"for f in {self.ledger}/produced {self.ledger}/handled; do [ ! -e $f ] || : > $f; done"
        for node in (None, *self.nodes):
            in_node(node, "sh", "-c", empty)

    def start_producer(self, *args: str) -> Any:
        """``pcq produce --json ARGS`` in a container on the stack's overlay network
        (the ledger emptied first; :meth:`wait_progress` then follows this run)."""
        self._runs += 1
        self.reset_ledger()
        self._acked_before = self.acked_sets()
        mounts = {
            str(self.secrets / "redis-producer-password"):
                {"bind": "/run/secrets/redis-producer-password", "mode": "ro"},
            str(self.secrets / "ca.crt"): {"bind": "/run/secrets/pcq-ca.crt", "mode": "ro"},
            str(self.ledger): {"bind": "/ledger", "mode": "rw"},
        }
        keep = ("PCQ_QUEUE", "PCQ_BATCH", "PCQ_HIGH_WATER", "PCQ_HEARTBEAT_TTL", "PCQ_MAX_DELAY")
        env = {k: self.env[k] for k in keep}
        env.update(REDIS_URL="rediss://producer@redis:6379/0", PCQ_LEDGER="/ledger",
                   PCQ_REDIS_PASSWORD_FILE="/run/secrets/redis-producer-password",
                   PCQ_REDIS_CA_FILE="/run/secrets/pcq-ca.crt")
        return self.client.containers.run(
            TEST_IMAGE, ["pcq", "produce", "--json", *args], detach=True,
            name=f"{self.name}-producer-{self._runs}", network=f"{self.name}_backend",
            environment=env, volumes=mounts, user="10001:10001", read_only=True,
            cap_drop=["ALL"], init=True, security_opt=["no-new-privileges:true"],
            tmpfs={"/tmp": "size=16m,mode=1777"},
        )

    def finish_producer(self, container: Any, timeout: float = PRODUCE_TIMEOUT) -> Produced:
        try:
            status = container.wait(timeout=timeout)
        except Exception as exc:  # requests' ReadTimeout: the run hung
            raise AssertionError(f"producer hung:\n{container.logs(tail=40).decode()}") from exc
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
        container.remove(force=True)
        return Produced(int(status["StatusCode"]), parse_tally(out, err), out, err)

    # Ledger ------------------------------------------------------------------------
    def audit(self, run: str) -> Audit:
        """Every node's ledger files in one :class:`Audit`, plus Redis's dead letters."""
        merged = Audit(self.work / f"merged-{run}")
        for kind in ("produced", "handled"):
            with open(merged.dir / kind, "w", encoding="utf-8") as out:
                host = self.ledger / kind
                if host.exists():
                    out.write(host.read_text(encoding="utf-8"))
                read = f"cat {self.ledger}/{kind} 2>/dev/null || true"
                out.writelines(in_node(node, "sh", "-c", read) for node in self.nodes)
        for dead in self.redis_cli("SMEMBERS", f"{PREFIX}:run:{run}:dead"):
            if dead:
                merged.dead_letter(dead, "dead-lettered")
        return merged

    def per_node(self, per_consumer: dict[str, int]) -> dict[str, int]:
        """Handlings per node hostname, from the ledger's per-consumer counts
        (a consumer id is ``<container id>:<pid>``)."""
        counts: dict[str, int] = {}
        for consumer, n in per_consumer.items():
            node = self.owner.get(consumer.split(":")[0], "?")
            counts[node] = counts.get(node, 0) + n
        return counts

    def note_containers(self) -> None:
        """Remember which node runs which consumer container (for :meth:`per_node`)."""
        with suppress(Exception):
            self.tasks()
