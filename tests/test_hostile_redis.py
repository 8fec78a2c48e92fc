"""Hostile input on the Redis list: every bad payload is dead-lettered with a reason.

Anyone who can write to the queue can push anything. One consumer process
(the code behind ``pcq consume``, with the ledger-keeping handler) meets a
stream of hostile payloads between good items; it must dead-letter each one
with its reason, hand none of them to the handler, never unpickle anything,
and keep going -- the same pid from start to end, no restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from audit import HANDLED
from hostile import DEEP_JSON, TEN_MB, Bomb
from redis_procs import wait_until

from pcq.core.redis_common.keys import Keys
from pcq.core.redis_list.tally import read_tally

if TYPE_CHECKING:
    from fixtures_redis import RedisServer
    from fixtures_reliability import Crew

pytest_plugins = ["fixtures_reliability"]
pytestmark = pytest.mark.timeout(180)



def hostile_payloads(marker: Path) -> dict[str, tuple[bytes, str]]:
    """name -> (raw payload, text the dead-letter reason must contain)."""
    good_shape = {"v": 1, "id": "evil:1", "run": "evil", "body": "x", "produced_at": 1.0,
                  "deliveries": 0}
    return {
        "not JSON": (b"Master Shake; DROP TABLE queue", "not JSON"),
        "empty": (b"", "not JSON"),
        "JSON array": (b'["Meatwad"]', "wrong schema"),
        "missing keys": (b'{"v": 1, "id": "evil:2", "body": "Frylock"}', "wrong schema"),
        "extra key": (json.dumps({**good_shape, "cmd": "rm -rf /"}).encode(), "wrong schema"),
        "body not a string": (json.dumps({**good_shape, "body": {"a": 1}}).encode(),
                              "wrong schema"),
        "bad version": (json.dumps({**good_shape, "v": 2}).encode(), "wrong schema"),
        "10 MB body": (json.dumps({**good_shape, "body": "A" * TEN_MB}).encode(), "oversize"),
        "invalid UTF-8": (b'{"v": 1, "body": "\xff\xfe\xc3\x28"}', "invalid UTF-8"),
        "deeply nested": (DEEP_JSON, "nested too deeply"),
        "pickle": (pickle.dumps(Bomb(marker), protocol=pickle.HIGHEST_PROTOCOL), "invalid UTF-8"),
        "pickle protocol 0": (pickle.dumps(Bomb(marker), protocol=0), "not JSON"),
    }


def test_the_pickle_payload_is_really_dangerous(tmp_path: Path) -> None:
    """Positive control: unpickled, the payload does create the marker."""
    marker = tmp_path / "pwned"
    payload = hostile_payloads(marker)["pickle"][0]
    code = "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"
    subprocess.run([sys.executable, "-c", code], input=payload, check=True, timeout=30)
    assert marker.exists()


def test_hostile_payloads_are_dead_lettered_and_the_consumer_survives(
    redis_server: RedisServer, crew: Any, tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    settings = redis_server.settings(heartbeat_ttl=2.0, batch=4, max_payload_bytes=64 * 1024)
    team: Crew = crew(settings)
    keys = Keys(settings.queue)
    hostile = hostile_payloads(marker)
    consumer = team.consumer(drain=False)
    pid = consumer.pid

    with redis_server.client() as client:
        # Hostile payloads first, then good items, then the hostile ones again.
        client.rpush(keys.queue, *(raw for raw, _ in hostile.values()))
        assert team.wait_all([team.producer(50)], 60) == [0], team.logs()[-2000:]
        client.rpush(keys.queue, *(raw for raw, _ in hostile.values()))
        assert team.wait_all([team.producer(10)], 60) == [0], team.logs()[-2000:]
        wait_until(lambda: team.ledger.count(HANDLED) >= 60 and client.llen(keys.queue) == 0,
                 60, "60 good items handled and the queue empty")
        wait_until(lambda: client.llen(keys.dead) >= 2 * len(hostile), 30, "every dead letter")
        records = [json.loads(r) for r in client.lrange(keys.dead, 0, -1)]
        stats = {k.decode(): int(v) for k, v in client.hgetall(keys.stats).items()}
        tally = read_tally(client, keys, team.run_id())

    assert consumer.poll() is None and consumer.pid == pid, "the consumer died"
    assert team.logs().count("Starting consumer") == 1, "the consumer restarted"
    assert team.stop_consumers() == [0]
    assert not marker.exists(), "a payload was unpickled"

    # One dead letter per hostile payload, each with the reason, the payload kept.
    assert len(records) == 2 * len(hostile), [r["reason"] for r in records]
    for (name, (raw, why)), record in zip(list(hostile.items()) * 2, records):
        assert why in record["reason"], (name, record["reason"][:200])
        kept = record.get("payload", "").encode() if "payload" in record else None
        if record.get("truncated"):  # the 10 MB one: a bounded prefix, with size and digest
            assert record["payload_bytes"] == len(raw) and len(raw) > 64 * 1024, name
            assert record["payload_sha256"] == hashlib.sha256(raw).hexdigest(), name
            assert kept is None or (raw.startswith(kept) and len(kept) == 64 * 1024), name
        else:
            assert kept == raw or "payload_b64" in record, name
    assert stats["malformed"] == 2 * len(hostile), stats

    report = team.ledger.report()
    print(report.summary(), {n: r["reason"][:60] for n, r in zip(hostile, records)})
    report.assert_sound()  # none of them reached the handler: unexpected == 0
    assert report.produced == report.handled == 60
    assert tally["consumed"] == tally["produced"], tally


def test_producer_refuses_a_10_mb_item_in_one_line(redis_server: RedisServer,
                                                   tmp_path: Path) -> None:
    names = tmp_path / "names.txt"
    names.write_text("Meatwad\n" + "A" * TEN_MB + "\n")
    settings = redis_server.settings()
    env = {**os.environ, "REDIS_URL": settings.url, "PCQ_QUEUE": settings.queue}
    proc = subprocess.run(
        [sys.executable, "-m", "pcq.core", "produce", "--names-file", str(names), "--timeout", "0"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    # Refused before anything is pushed (by the names-file reader or the payload cap).
    assert len(lines) == 1 and re.search(r"exceeds|over", lines[0]), proc.stderr[-500:]
    assert "Traceback" not in proc.stderr
