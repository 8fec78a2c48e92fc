"""docker-stack.yml across three nodes: a worker drained, a worker killed, TLS on the wire.

This engine is the manager (and runs Redis, pinned by its node label); two
simulated workers (``swarm-nodes up 2``) join it. Six consumers spread over the
three nodes (at most three per node). Judged by the ledger files every node
keeps (gathered by :meth:`fixtures_swarm.Stack.audit`), not by Redis's sets.

Encryption: while the first run goes, every frame on the ``docker0`` bridge --
which carries the overlay's VXLAN packets between the nodes -- is captured with
an ``AF_PACKET`` socket. No item body may appear in it. So that this can fail,
a clear-text marker is sent from a consumer on a worker to Redis's port during
the capture, and must be found.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_swarm import PREFIX, Stack, in_node, sh, swarm

from pcq.core.names import item_bodies

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

ITEMS = 2400
CONSUMERS = 6
MANAGER = socket.gethostname()


@pytest.fixture(scope="module")
def stack(docker_client: Any, docker_image: str) -> Iterator[Stack]:
    with swarm(2) as nodes:
        deployed = Stack(docker_client, nodes, PCQ_CONSUMERS=str(CONSUMERS), PCQ_MAX_PER_NODE="3")
        try:
            took = deployed.deploy()
            print(f"deploy -> {CONSUMERS} consumers healthy on 3 nodes: {took:.1f}s")
            yield deployed
        finally:
            deployed.remove()


class Capture:
    """Every frame seen on a network interface, in memory (root: an AF_PACKET socket)."""

    def __init__(self, interface: str = "docker0") -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0003))
        self.sock.bind((interface, 0))
        self.sock.settimeout(0.2)
        self.data = bytearray()
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.frames += 1
            self.data += frame

    def stop(self) -> bytes:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        return bytes(self.data)


def judge(stack: Stack, run: Any) -> dict[str, int]:
    """Exact tally and a sound ledger; returns the handlings per node."""
    tally = run.tally
    print(f"tally {tally}")
    assert run.exit_code == 0, run.stderr[-3000:]
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (ITEMS, ITEMS, 0), tally
    report = stack.audit(tally["run"]).report()
    print(report.summary())
    assert report.produced == ITEMS and report.dead == 0
    report.assert_sound(duplicates_allowed=tally["redelivered"])
    per_node = stack.per_node(report.per_consumer)
    print(f"handled per node: {per_node}")
    return per_node


def send_cleartext(stack: Stack, node: str, marker: str) -> None:
    """From a consumer container on ``node``, write ``marker`` to Redis's port, unencrypted."""
    (task, *_) = [t for t in stack.running() if t["node"] == node]
    code = ("import socket,sys; s=socket.create_connection(('redis',6379),5); "
            "s.sendall(sys.argv[1].encode()+b'\\r\\n'); s.close()")
    in_node(f"swarm-{node}", "docker", "exec", task["container"], "python", "-c", code, marker)


def test_spread_tls_on_the_wire_and_a_worker_drained(stack: Stack) -> None:
    assert {t["node"] for t in stack.running()} == {MANAGER, "node-1", "node-2"}, stack.tasks()
    capture = Capture()
    try:
        producer = stack.start_producer("--items", str(ITEMS), "--batch", "50", "--timeout", "300")
        stack.wait_progress(300)
        marker = f"pcq-cleartext-control-{secrets.token_hex(6)}"
        send_cleartext(stack, "node-1", marker)
        stack.note_containers()
        drained = time.monotonic()
        sh("docker", "node", "update", "--availability", "drain", "node-1")
        moved = stack.wait_consumers(CONSUMERS, timeout=120, avoid="node-1")
        print(f"drain node-1 -> its consumers gone, {CONSUMERS} running elsewhere: "
              f"{time.monotonic() - drained:.1f}s (wait {moved:.1f}s)")
        stack.note_containers()
        run = stack.finish_producer(producer, timeout=300)
    finally:
        wire = capture.stop()
        sh("docker", "node", "update", "--availability", "active", "node-1", check=False)
    per_node = judge(stack, run)
    assert all(per_node.get(n, 0) > 0 for n in (MANAGER, "node-1", "node-2")), per_node
    print(f"captured {capture.frames} frames, {len(wire)} bytes on docker0")
    assert marker.encode() in wire, "the capture missed clear text sent between nodes"
    clear = [body for body in item_bodies(ITEMS, None) if body.encode() in wire]
    assert clear == [], f"{len(clear)} item bodies in clear text, e.g. {clear[:3]}"


def test_worker_killed_mid_run_and_brought_back(stack: Stack) -> None:
    stack.wait_consumers(CONSUMERS, timeout=60)
    victims = [t["container"] for t in stack.running() if t["node"] == "node-2"]
    assert victims, stack.tasks()
    producer = stack.start_producer("--items", str(ITEMS), "--batch", "50", "--timeout", "300")
    try:
        stack.wait_progress(300)
        stack.note_containers()
        killed = time.monotonic()
        sh("docker", "kill", "swarm-node-2")
        reaped = wait_reaped(stack, victims, timeout=60)
        print(f"kill node-2 -> its consumers' items back in the queue: {reaped - killed:.1f}s")
        stack.wait_consumers(CONSUMERS, timeout=120, avoid="node-2")
        print(f"kill node-2 -> {CONSUMERS} consumers running elsewhere: "
              f"{time.monotonic() - killed:.1f}s")
        stack.note_containers()
        run = stack.finish_producer(producer, timeout=300)
    finally:
        back = time.monotonic()
        sh("docker", "start", "swarm-node-2", check=False)
        wait_ready("node-2", timeout=120)
        print(f"node-2 back Ready: {time.monotonic() - back:.1f}s")
    per_node = judge(stack, run)
    assert run.tally["redelivered"] >= 1, "the killed node's consumers held nothing"
    assert per_node.get("node-2", 0) > 0, per_node


def wait_reaped(stack: Stack, containers: list[str], timeout: float) -> float:
    """Wait until no processing list of these consumers holds an item; when that was."""
    deadline = time.monotonic() + timeout
    while True:
        keys = [k for k in stack.redis_cli("--scan", "--pattern", f"{PREFIX}:proc:*") if k]
        held = [k for k in keys if any(c in k for c in containers)
                and stack.redis_cli("LLEN", k) != ["0"]]
        if not held:
            return time.monotonic()
        assert time.monotonic() < deadline, f"still held after {timeout}s: {held}"
        time.sleep(0.2)


def wait_ready(hostname: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = sh("docker", "node", "inspect", "-f", "{{.Status.State}}", hostname, check=False)
        if status.strip() == "ready":
            return
        time.sleep(0.5)
    raise AssertionError(f"{hostname} not ready after {timeout}s")
