"""Unit tests of the comparison's parsing, metrics and results.json validator."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from pcq.core.compare.metrics import RunMetrics, fairness, latency_ms, percentile, summarize
from pcq.core.compare.schema import SCHEMA, validate_results
from pcq.core.compare.workload import (
    Work,
    Workload,
    make_body,
    parse_consumers,
    parse_transports,
    parse_work,
)
from pcq.core.errors import UsageProblem


def test_parse_work() -> None:
    assert parse_work("noop") == Work("noop")
    assert parse_work("sleep:10") == Work("sleep", 10.0)
    assert str(parse_work("CPU:2.5")) == "cpu:2.5"
    for bad in ("sleep:-1", "sleep:", "cpu:x", "sleep:nan", "sleep:1e9", "io:3", ""):
        with pytest.raises(UsageProblem):
            parse_work(bad)


def test_parse_lists() -> None:
    assert parse_consumers("8, 1,2,2") == (1, 2, 8)
    assert parse_transports("rq,local") == ("local", "rq")
    for bad in ("0", "-1", "1,,2", "a", "65"):
        with pytest.raises(UsageProblem):
            parse_consumers(bad)
    with pytest.raises(UsageProblem):
        parse_transports("local,zeromq")


def test_make_body_has_exact_size() -> None:
    assert len(make_body(7, 100).encode()) == 100
    assert len(make_body(123456, 3)) == 3


def test_percentiles_and_fairness() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert math.isnan(percentile([], 50))
    assert latency_ms([0.001, 0.002, 0.003])["p50"] == pytest.approx(2.0)
    assert fairness([5, 5, 5]) == 1.0
    assert fairness([10, 0]) == 0.5
    assert fairness([]) == 0.0


def _run(transport: str, consumers: int, ips_scale: float) -> RunMetrics:
    stamps = [(float(i), float(i) + 0.01 * ips_scale) for i in range(10)]
    return RunMetrics.build(
        transport=transport, consumers=consumers, repeat=0, items=10, stamps=stamps,
        per_consumer={"a": 10}, wall_seconds=1.0, peak_rss=2**20, lost=0,
    )


def _valid() -> dict:
    runs = [_run("local", 1, 1.0), _run("local", 1, 2.0), _run("redis", 2, 1.0)]
    return {
        "schema": SCHEMA, "created_at": "2026-01-01T00:00:00+00:00",
        "machine": {"cpus": 2, "platform": "Linux", "python": "3.11"},
        "workload": {"items": 10, "payload_bytes": 64, "work": "noop", "batch": 1},
        "consumers": [1, 2], "transports": ["local", "redis"], "repeat": 2,
        "redis": {"source": "embedded", "version": "7.0"}, "rq_worker": "fork",
        "skipped": [], "runs": [r.to_json() for r in runs], "summary": summarize(runs),
    }


def test_summary_takes_medians() -> None:
    rows = {(r["transport"], r["consumers"]): r for r in _valid()["summary"]}
    assert rows[("local", 1)]["repeats"] == 2
    assert rows[("redis", 2)]["peak_rss_mib"] == 1.0


def test_validator_accepts_valid_and_names_each_problem() -> None:
    good = _valid()
    assert validate_results(good) == []
    cases = {
        "$.workload.items": lambda d: d["workload"].pop("items"),
        "$.runs[0].consumed": lambda d: d["runs"][0].update(consumed="10"),
        "$.runs[1].per_consumer": lambda d: d["runs"][1].update(per_consumer={"a": -1}),
        "$.summary": lambda d: d["summary"].pop(),
        "$.schema": lambda d: d.update(schema="other/9"),
        "$.runs[2]": lambda d: d["runs"][2].update(lost=3),
        "$.repeat": lambda d: d.update(repeat=True),
    }
    for where, damage in cases.items():
        bad = copy.deepcopy(good)
        damage(bad)
        errors = validate_results(bad)
        assert any(e.startswith(where) for e in errors), (where, errors)


@pytest.mark.parametrize("healthcheck", [True, False])
def test_docker_override_runs_the_harness_producer_as_admin(healthcheck: bool) -> None:
    # The harness's producer reads the consumers' keys: as the producer ACL user
    # it got NoPermissionError (a merge had tucked its override under the
    # healthcheck switch, so it applied only with healthchecks off).
    from pcq.core.compare.docker_runner import DockerCompare

    runner = DockerCompare(Workload(items=1, payload_bytes=8, work=parse_work("noop")),
                           healthcheck=healthcheck)
    try:
        services = yaml.safe_load(runner.override.read_text(encoding="utf-8"))["services"]
        assert (runner.secrets / "redis-admin-password").is_file()
    finally:
        runner.close()
    producer = services["producer"]
    assert producer["environment"]["REDIS_URL"].startswith("redis://admin@"), producer
    assert producer["secrets"] == ["redis-admin-password"]
    assert services["consumer"].get("healthcheck", {}).get("disable", False) is not healthcheck
