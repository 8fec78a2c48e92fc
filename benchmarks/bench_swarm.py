"""Swarm figures: deploy -> consumers healthy, and items/s with consumers on 1 vs 3 nodes.

    python benchmarks/bench_swarm.py [--items 20000] [--rounds 2] [--consumers 6] [--batch 10]

Uses the tests' swarm helpers (tests/fixtures_swarm.py): this engine as the
manager (Redis pinned here) plus two simulated worker nodes (``swarm-nodes up
2``), docker-stack.yml with TLS to Redis. The consumers run with
``PCQ_MAX_DELAY=0`` (no demo sleep: the transport is what is timed), first
spread over the three nodes, then all moved to the manager (both workers
drained), alternating for ``--rounds``.

On one VM the "nodes" share the same two cores, so 3 nodes cannot add CPU: the
difference measures the overlay network's cost (VXLAN encapsulation through the
docker0 bridge, a dockerd per node), not what real machines would gain. Every
run is printed, with the load average before and after. Needs root and Docker;
takes about three minutes. The swarm is taken down at the end, whatever happens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fixtures_docker import BUILD_TIMEOUT, TEST_IMAGE, TEST_REDIS_IMAGE, open_project
from fixtures_swarm import Stack, sh, swarm


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def place(stack: Stack, consumers: int, manager_only: bool) -> None:
    """All consumers on the manager (workers drained), or spread over the three nodes
    (workers active, every task replaced at once so the spread preference applies)."""
    if manager_only:
        for node in ("node-1", "node-2"):
            sh("docker", "node", "update", "--availability", "drain", node)
    else:
        for node in ("node-1", "node-2"):
            sh("docker", "node", "update", "--availability", "active", node)
        sh("docker", "service", "update", "--detach", "--force", "--update-parallelism", "0",
           "--update-order", "stop-first", f"{stack.name}_consumer")
    want = 1 if manager_only else 3  # nodes the consumers should be on
    deadline = time.monotonic() + 300
    while True:
        run = stack.running()
        spread = {t["node"] for t in run}
        if len(run) == consumers and len(stack.tasks()) == consumers and len(spread) == want:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"consumers did not settle: {stack.tasks()}")
        time.sleep(0.5)


def one_run(stack: Stack, items: int, batch: int) -> dict[str, object]:
    before = load()
    producer = stack.start_producer("--items", str(items), "--batch", str(batch), "--timeout", "300")
    run = stack.finish_producer(producer, timeout=330)
    tally = run.tally
    if run.exit_code != 0 or tally["lost"] != 0:
        raise SystemExit(f"run failed: {tally} {run.stderr[-500:]}")
    return {"items_per_second": tally["items_per_second"], "seconds": tally["seconds"],
            "redelivered": tally["redelivered"], "load_before": before, "load_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--consumers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=10)
    args = parser.parse_args()
    import docker

    client = docker.from_env(timeout=120)
    with open_project(client) as project:
        project.compose("build", timeout=BUILD_TIMEOUT)
    results: dict[str, object] = {"load_at_start": load(), "runs": []}
    try:
        with swarm(2) as nodes:
            stack = Stack(client, nodes, PCQ_CONSUMERS=str(args.consumers), PCQ_MAX_DELAY="0",
                          PCQ_BATCH=str(args.batch), PCQ_MAX_PER_NODE="0",
                          PCQ_HIGH_WATER="10000")
            try:
                results["deploy_to_healthy_s"] = round(stack.deploy(), 1)
                print(f"deploy -> {args.consumers} consumers healthy: {results['deploy_to_healthy_s']}s"
                      f" (load {load()})", flush=True)
                runs: list[dict[str, object]] = []
                for _ in range(args.rounds):
                    for manager_only in (False, True):
                        place(stack, args.consumers, manager_only)
                        run = one_run(stack, args.items, args.batch)
                        run["nodes"] = 1 if manager_only else 3
                        runs.append(run)
                        print(json.dumps(run), flush=True)
                results["runs"] = runs
                for n in (1, 3):
                    rates = [float(str(r["items_per_second"])) for r in runs if r["nodes"] == n]
                    results[f"median_items_per_second_{n}_nodes"] = statistics.median(rates)
            finally:
                stack.remove()
    finally:
        for tag in (TEST_IMAGE, TEST_REDIS_IMAGE):
            sh("docker", "rmi", "-f", tag, check=False)
    results["load_at_end"] = load()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
