"""Consumers' /metrics: scraped with prometheus-client's own parser, the counters equal the run's tally.

Two ``pcq consume --metrics-port`` processes serve a run with two poison items
(``--max-deliveries 2``: each fails twice, is redelivered once, then
dead-lettered). The producer's tally is the ledger; the consumers' counters,
summed, must say the same. Also: a bad port is one line and exit 2.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from fixtures_redis import RedisServer, free_port
from prometheus_client.parser import text_string_to_metric_families
from redis_procs import Proc, env_for, wait_until

POISON = 2
ITEMS = 40


def scrape(port: int) -> dict[str, float]:
    """sample name -> value, the ``queue`` label dropped (one queue per consumer)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "le" not in sample.labels
    }


def answers(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def test_counters_equal_the_run_tally(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = redis_server.settings(heartbeat_ttl=2.0, max_deliveries=2)
    names = tmp_path / "names.txt"
    lines = [f"name {n}" for n in range(ITEMS)] + [f"poison {n}" for n in range(POISON)]
    names.write_text("\n".join(lines) + "\n")
    env = env_for(settings, PCQ_MAX_DELIVERIES="2", PCQ_MAX_DELAY="0.01")
    ports = [free_port(), free_port()]
    consumers = [Proc("consumer", ["--quiet", "--metrics-port", str(p)], env, tmp_path) for p in ports]
    try:
        for port in ports:
            wait_until(lambda port=port: answers(port), 30, f"metrics on port {port}")
        producer = Proc("producer", ["--names-file", str(names), "--json", "--timeout", "120"],
                        env, tmp_path)  # fmt: skip
        assert producer.wait(180) == 0, producer.stderr
        tally = producer.json()
        assert tally["produced"] == ITEMS + POISON and tally["lost"] == 0, tally
        scraped = [scrape(port) for port in ports]
    finally:
        for proc in consumers:
            proc.signal(signal.SIGTERM)
        for proc in consumers:
            proc.wait(30)

    def total(name: str) -> float:
        return sum(s.get(name, 0.0) for s in scraped)

    assert total("pcq_consumer_handled_total") == tally["consumed"] == ITEMS
    assert total("pcq_consumer_dead_lettered_total") == tally["dead_letters"] == POISON
    assert total("pcq_consumer_redelivered_total") == tally["redelivered"] == POISON
    assert total("pcq_consumer_failed_total") == 2 * POISON  # two deliveries each
    deliveries = ITEMS + 2 * POISON
    assert total("pcq_consumer_handler_seconds_count") == deliveries
    assert total("pcq_consumer_queued_seconds_count") == deliveries
    assert total("pcq_consumer_in_flight") == 0
    assert all(s["pcq_consumer_handled_total"] > 0 for s in scraped), "one consumer did nothing"


def test_bad_metrics_port_is_one_line_exit_2(redis_server: RedisServer) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pcq.consumer", "--metrics-port", "70000"],
        env=env_for(redis_server.settings()), capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--metrics-port" in proc.stderr
