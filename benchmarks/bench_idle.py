"""Benchmark: what idle consumer containers cost (issue 14).

Usage::

    .venv/bin/python benchmarks/bench_idle.py [--consumers 8] [--seconds 60] [--settle 15]
        [--checks 20] [--json]

Starts the repository's ``docker-compose.yml`` under a project of its own
(``pcq-idle-<hex>``, an image tag of its own, random passwords) with
``--scale consumer=N`` and nothing to do, and reports:

1. *Idle CPU, per container*: the sum of the project's containers' own CPU
   time over ``--seconds`` (cgroup v1 ``cpuacct.usage``, v2 ``cpu.stat``
   ``usage_usec``). Healthcheck processes run inside their container's cgroup,
   so they are included. Other engineers' work on the machine is not.
2. *Idle CPU, machine-wide*: busy time from ``/proc/stat`` over ``--seconds``
   with the stack down (first) and up (then), plus the CPU of the engine's own
   processes (dockerd, containerd, shims) while up -- each ``docker exec`` of a
   healthcheck costs there too. Both include whatever else the machine did:
   read them with the load averages printed beside them.
3. *One healthcheck's CPU*: the consumer's configured healthcheck command run
   ``--checks`` times inside a consumer container by a small driver, which
   reads its children's CPU (``RUSAGE_CHILDREN``) -- the command alone; and
   the container's cgroup CPU per ``docker exec`` of it, which adds what any
   exec costs in there (``runc init``), shown beside an exec of ``true``.
4. *Resident memory per idle consumer*: the container's cgroup memory (usage,
   and its rss/anon part) and the consumer process's own RSS (``VmRSS``).

Everything it starts is torn down (``down -v``) and its image tag removed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CGROUP = Path("/sys/fs/cgroup")
TICK = os.sysconf("SC_CLK_TCK")
ENGINE = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc")

# Runs the healthcheck argv N times; prints the children's CPU per run (ms) and exit codes.
_DRIVER = """\
import json, resource, subprocess, sys
argv, n = json.loads(sys.argv[1]), int(sys.argv[2])
codes = [subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
         for _ in range(n)]
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"cpu_ms": round((r.ru_utime + r.ru_stime) * 1000 / n, 3),
                  "exit_codes": sorted(set(codes))}))
"""


def _cgroup_dir(controller: str, cid: str) -> Path:
    for path in (CGROUP / controller / "docker" / cid, CGROUP / "system.slice" / f"docker-{cid}.scope",
                 CGROUP / "docker" / cid):
        if path.is_dir():
            return path
    raise SystemExit(f"bench_idle: no cgroup found for container {cid[:12]}")


def container_cpu_ns(cid: str) -> int:
    """CPU time a container's cgroup has used so far (ns), cgroup v1 or v2."""
    v1 = CGROUP / "cpuacct" / "docker" / cid / "cpuacct.usage"
    if v1.exists():
        return int(v1.read_text())
    stat = dict(line.split() for line in (_cgroup_dir("", cid) / "cpu.stat").read_text().splitlines())
    return int(stat["usage_usec"]) * 1000


def container_memory(cid: str) -> dict[str, float]:
    """MiB: the cgroup's memory usage, its anonymous (rss) part, and the consumer process's VmRSS."""
    v1 = CGROUP / "memory" / "docker" / cid
    if v1.is_dir():
        usage = int((v1 / "memory.usage_in_bytes").read_text())
        stat = dict(line.split() for line in (v1 / "memory.stat").read_text().splitlines())
        anon, procs = int(stat["total_rss"]), v1 / "cgroup.procs"
    else:
        path = _cgroup_dir("", cid)
        usage = int((path / "memory.current").read_text())
        stat = dict(line.split() for line in (path / "memory.stat").read_text().splitlines())
        anon, procs = int(stat["anon"]), path / "cgroup.procs"
    rss = {}
    for pid in procs.read_text().split():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        vm = [line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")]
        if vm:
            rss[cmd.strip()] = int(vm[0]) / 1024
    consumer = max((v for k, v in rss.items() if "pcq" in k), default=0.0)
    mib = 1024 * 1024
    return {"cgroup_usage_mib": round(usage / mib, 1), "cgroup_rss_mib": round(anon / mib, 1),
            "process_rss_mib": round(consumer, 1)}


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine so far (busy = not idle, not iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - fields[3] - fields[4], total


def engine_ticks() -> dict[int, int]:
    """pid -> CPU jiffies used so far, of the Docker engine's processes (dockerd, containerd, shims).

    Engine-wide: other engineers' containers count too. Besides its own time, a
    shim's waited-for children (cutime, cstime) count: the ``runc`` run for
    each ``docker exec`` of a healthcheck. Use :func:`engine_delta`.
    """
    used = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name in ENGINE or name.startswith("containerd-shim"):
            rest = stat[stat.rindex(")") + 2 :].split()
            used[int(entry.name)] = sum(int(x) for x in rest[11:15])  # utime stime cutime cstime
    return used


def engine_delta(before: dict[int, int], after: dict[int, int]) -> int:
    """Jiffies between two :func:`engine_ticks`: processes alive at both, plus new ones whole."""
    return sum(ticks - before.get(pid, 0) for pid, ticks in after.items())


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Project:
    """The repository's compose file under a private project name and image tag."""

    def __init__(self, consumers: int) -> None:
        tag = secrets.token_hex(4)
        self.name, self.image, self.consumers = f"pcq-idle-{tag}", f"pcq:idle-{tag}", consumers
        # Fresh passwords as files (scripts/secrets), never in the environment.
        self._secrets = tempfile.TemporaryDirectory(prefix="pcq-idle-secrets-")
        subprocess.run([str(REPO / "scripts" / "secrets"), "init", self._secrets.name],
                       capture_output=True, timeout=120, check=True)
        self.env = dict(os.environ, PCQ_IMAGE=self.image, PCQ_REDIS_IMAGE=f"pcq-redis:idle-{tag}",
                        PCQ_SECRETS_DIR=self._secrets.name, COMPOSE_BAKE="false",
                        PCQ_QUEUE="idle")

    def compose(self, *args: str, timeout: float = 600) -> str:
        cmd = ["docker", "compose", "-p", self.name, "-f", str(REPO / "docker-compose.yml"), *args]
        proc = subprocess.run(cmd, cwd=REPO, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"bench_idle: compose {args[0]} failed: {proc.stderr.strip()[-500:]}")
        return proc.stdout

    def ids(self, *services: str) -> list[str]:
        return self.compose("ps", "-q", "--no-trunc", *services).split()

    def down(self) -> None:
        subprocess.run(["docker", "compose", "-p", self.name, "-f", str(REPO / "docker-compose.yml"),
                        "down", "-v", "--remove-orphans", "-t", "10"], cwd=REPO, env=self.env,
                       capture_output=True, timeout=300, check=False)
        for image in (self.image, self.env["PCQ_REDIS_IMAGE"]):
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, timeout=120, check=False)
        self._secrets.cleanup()


def sample(seconds: float, containers: list[str] | None) -> dict[str, Any]:
    """CPU over ``seconds``: machine busy cores, engine cores and (if given) the containers' cores."""
    load0 = loadavg()
    m0, e0 = machine_ticks(), engine_ticks()
    c0 = {c: container_cpu_ns(c) for c in containers or []}
    t0 = time.monotonic()
    time.sleep(seconds)  # the measurement window itself
    dt = time.monotonic() - t0
    m1, e1 = machine_ticks(), engine_ticks()
    c1 = {c: container_cpu_ns(c) for c in c0}
    engine = engine_delta(e0, e1)
    out: dict[str, Any] = {
        "seconds": round(dt, 1), "load_before": load0, "load_after": loadavg(),
        "machine_busy_cores": round((m1[0] - m0[0]) / TICK / dt, 3),
        "engine_cores": round(engine / TICK / dt, 4),
    }
    if containers:
        per = {c[:12]: (c1[c] - c0[c]) / 1e9 / dt for c in c0}
        out["containers_cores"] = round(sum(per.values()), 4)
        out["per_container_cores"] = {k: round(v, 4) for k, v in per.items()}
    return out


def healthcheck_cost(cid: str, runs: int, idle_cores: float) -> dict[str, Any]:
    """One healthcheck's CPU: the command alone (``_DRIVER``), and per ``docker exec`` (cgroup)."""
    proc = subprocess.run(["docker", "inspect", "-f", "{{json .Config.Healthcheck}}", cid],
                          capture_output=True, text=True, timeout=60, check=True)
    check = json.loads(proc.stdout)
    test = check["Test"]
    argv = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    proc = subprocess.run(["docker", "exec", cid, "python", "-c", _DRIVER, json.dumps(argv), str(runs)],
                          capture_output=True, text=True, timeout=600, check=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(test=test, interval_seconds=check.get("Interval", 0) / 1e9, runs=runs)
    result["exec_ms"] = exec_cost(cid, argv, idle_cores)
    result["exec_true_ms"] = exec_cost(cid, ["true"], idle_cores)
    return result


def exec_cost(cid: str, argv: list[str], idle_cores: float, runs: int = 20) -> float:
    """ms of the container's CPU per ``docker exec`` of ``argv``, as its cgroup sees it.

    That is the command plus what every exec costs inside the container (the
    runtime's ``runc init`` joins the cgroup before the command starts), minus
    the container's idle rate (``idle_cores``) over the time it took.
    """
    before, started = container_cpu_ns(cid), time.monotonic()
    for _ in range(runs):
        subprocess.run(["docker", "exec", cid, *argv], capture_output=True, timeout=60, check=False)
    used_ms = (container_cpu_ns(cid) - before) / 1e6 - idle_cores * (time.monotonic() - started) * 1000
    return round(used_ms / runs, 2)


def wait_settled(project: Project, timeout: float = 300) -> None:
    """Until every consumer container reports healthy (compose's own wait is not in every version)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = project.ids("consumer")
        states = [subprocess.run(["docker", "inspect", "-f", "{{.State.Health.Status}}", c],
                                 capture_output=True, text=True, check=False).stdout.strip()
                  for c in ids]
        if len(ids) == project.consumers and all(s == "healthy" for s in states):
            return
        time.sleep(1)  # polling the engine, bounded by the deadline
    raise SystemExit(f"bench_idle: consumers not all healthy after {timeout:g}s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    project = Project(args.consumers)
    result: dict[str, Any] = {"consumers": args.consumers, "cpus": os.cpu_count()}
    try:
        project.compose("build", "consumer", "redis", timeout=900)
        result["down"] = sample(args.seconds, None)
        project.compose("up", "-d", "--no-build", "--scale", f"consumer={args.consumers}",
                        "redis", "consumer")
        wait_settled(project)
        time.sleep(args.settle)  # let start-up (imports, first reaps) pass before measuring
        result["up"] = sample(args.seconds, project.ids())
        consumers = project.ids("consumer")
        result["memory"] = {c[:12]: container_memory(c) for c in consumers}
        idle = result["up"]["per_container_cores"][consumers[0][:12]]
        result["healthcheck"] = healthcheck_cost(consumers[0], args.checks, idle)
    finally:
        project.down()
    return result


def report(r: dict[str, Any]) -> None:
    up, down, hc = r["up"], r["down"], r["healthcheck"]
    checks = r["consumers"] * up["seconds"] / hc["interval_seconds"] if hc["interval_seconds"] else 0
    mem = list(r["memory"].values())

    def avg(key: str) -> float:
        return sum(m[key] for m in mem) / len(mem)

    print(f"{r['consumers']} idle consumer containers + Redis, {up['seconds']} s, {r['cpus']} CPUs")
    print(f"  containers' own CPU (cgroups): {up['containers_cores']:.4f} cores")
    print(f"  machine busy, stack up:   {up['machine_busy_cores']:.3f} cores "
          f"(load {up['load_before']} -> {up['load_after']}); engine processes {up['engine_cores']:.4f}")
    print(f"  machine busy, stack down: {down['machine_busy_cores']:.3f} cores "
          f"(load {down['load_before']} -> {down['load_after']}); engine processes {down['engine_cores']:.4f}")
    print(f"  one healthcheck, per docker exec (cgroup): {hc['exec_ms']:.2f} ms; "
          f"docker exec of `true`: {hc['exec_true_ms']:.2f} ms")
    print(f"  one healthcheck command alone: {hc['cpu_ms']:.2f} ms CPU ({hc['runs']} runs of {hc['test']}, "
          f"exit codes {hc['exit_codes']}); ~{checks:.0f} checks in the window "
          f"= {checks * hc['cpu_ms'] / 1000 / up['seconds']:.4f} cores")
    print(f"  memory per consumer (mean of {len(mem)}): cgroup {avg('cgroup_usage_mib'):.1f} MiB "
          f"(rss {avg('cgroup_rss_mib'):.1f}), process RSS {avg('process_rss_mib'):.1f} MiB")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=15.0)
    parser.add_argument("--checks", type=int, default=20, help="healthcheck runs timed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
