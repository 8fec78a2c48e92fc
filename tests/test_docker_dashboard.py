"""Compose's `dashboard` and `monitoring` profiles: the page and its gauges on the host's loopback
only, consumers' /metrics on the internal network only, and Prometheus (built from Debian's
package) finding every consumer replica by DNS and scraping the run's counters.

Skips without a Docker engine unless PCQ_REQUIRE_DOCKER=1 (CI).
"""

from __future__ import annotations

import json
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
from fixtures_docker import BUILD_TIMEOUT, UP_AND_WAIT, UP_TIMEOUT, ComposeProject, open_project
from fixtures_redis import free_port
from redis_procs import wait_until

pytestmark = pytest.mark.docker
CONSUMERS = 2
PROMETHEUS_IMAGE = f"pcq-prometheus:test-{secrets.token_hex(4)}"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)


@pytest.fixture(scope="module")
def monitored(docker_client: Any, docker_image: str) -> Iterator[tuple[ComposeProject, int, int]]:
    """Redis, two consumers, the dashboard and Prometheus; (project, dashboard port, Prometheus port)."""
    dash_port, prom_port = free_port(), free_port()
    with open_project(docker_client, PCQ_DASHBOARD_PORT=str(dash_port),
                      PCQ_PROMETHEUS_PORT=str(prom_port),
                      PCQ_PROMETHEUS_IMAGE=PROMETHEUS_IMAGE) as project:  # fmt: skip
        try:
            project.compose("--profile", "monitoring", "build", "prometheus", timeout=BUILD_TIMEOUT)
            project.compose("--profile", "monitoring", *UP_AND_WAIT, "--scale",
                            f"consumer={CONSUMERS}", "redis", "consumer", "dashboard", "prometheus",
                            timeout=UP_TIMEOUT + 60)  # fmt: skip
            yield project, dash_port, prom_port
        finally:
            project.compose("--profile", "monitoring", "down", "--volumes", "--timeout", "5",
                            timeout=120, check=False)  # fmt: skip
            import docker

            with suppress(docker.errors.APIError):
                docker_client.images.remove(PROMETHEUS_IMAGE, force=True)


def test_dashboard_is_local_only_hardened_and_reads_the_queue(monitored: tuple) -> None:
    project, port, _ = monitored
    (dash,) = project.containers("dashboard")
    host = dash.attrs["HostConfig"]
    assert [b["HostIp"] for b in host["PortBindings"]["8188/tcp"]] == ["127.0.0.1"]
    assert dash.exec_run(["id", "-u"]).output.strip() == b"10001"
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"] and host["Init"] is True
    assert dash.attrs["State"]["Health"]["Status"] == "healthy"
    assert get_json(f"http://127.0.0.1:{port}/healthz")["healthy"] is True
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    assert f'pcq_queue_consumers_alive{{queue="pcqtest"}} {CONSUMERS}.0' in text, text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as reply:
        assert "pcq dashboard" in reply.read().decode()


def test_consumer_metrics_only_on_the_internal_network(monitored: tuple) -> None:
    project, _, _ = monitored
    consumers = project.containers("consumer")
    assert len(consumers) == CONSUMERS
    assert all(not c.attrs["HostConfig"]["PortBindings"] for c in consumers)
    (dash,) = project.containers("dashboard")
    probe = ("import urllib.request as u; "
             "print(u.urlopen('http://consumer:9464/metrics', timeout=5).read().decode())")
    result = dash.exec_run(["python", "-c", probe])
    assert result.exit_code == 0 and b"pcq_consumer_handled_total" in result.output


def test_prometheus_scrapes_every_consumer_by_dns(monitored: tuple) -> None:
    project, _, prom = monitored
    api = f"http://127.0.0.1:{prom}/api/v1"

    def up_targets() -> list[dict[str, Any]]:
        targets = get_json(f"{api}/targets")["data"]["activeTargets"]
        return [t for t in targets if t["health"] == "up"]

    wait_until(lambda: sum(t["labels"]["job"] == "pcq-consumers" for t in up_targets()) == CONSUMERS,
               90, f"{CONSUMERS} consumer targets up")  # fmt: skip
    produced = project.produce("--items", "30", "--timeout", "120")
    assert produced.exit_code == 0 and produced.tally["consumed"] == 30, produced.stderr
    query = urllib.parse.quote('sum(pcq_consumer_handled_total{queue="pcqtest"})')

    def handled() -> float:
        result = get_json(f"{api}/query?query={query}")["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    wait_until(lambda: handled() == 30, 60, "Prometheus to count the run's 30 items")
