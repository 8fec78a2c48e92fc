"""Faults survived by the Redis list transport, judged by the independent ledger.

Real processes (``tests/chaos_redis.py``: the code behind ``pcq consume`` with a
ledger-keeping handler, and a producer that records what Redis acknowledged)
on a real ``redis-server``. Every test ends with ``lost == 0`` and
``unexpected == 0``; duplicates are allowed only up to the redeliveries the
transport counted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
from audit import HANDLED, PRODUCED
from chaos import chaos_rng, kill_loop

from pcq.core.redis_list.pushes import WINDOW
from pcq.core.redis_list.status import queue_status
from pcq.core.redis_list.tally import read_tally

if TYPE_CHECKING:  # imported as a plugin below: importing it here would skip its rewrite
    from fixtures_redis import RedisServer
    from fixtures_reliability import Crew, EverysecServer

pytest_plugins = ["fixtures_reliability"]
pytestmark = pytest.mark.timeout(300)

CHAOS_ITEMS = int(os.environ.get("PCQ_CHAOS_ITEMS", "20000"))
CHAOS_KILLS = int(os.environ.get("PCQ_CHAOS_KILLS", "10"))
CONSUMERS = 4


def settle(crew: Crew, client: Any, run: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait (bounded) until the run's tally accounts for every item; return it."""
    deadline = time.monotonic() + timeout
    while True:
        tally = read_tally(client, crew.keys, run)
        if tally["closed"] and tally["lost"] == 0:
            return tally
        assert time.monotonic() < deadline, f"not settled after {timeout}s: {tally}"
        time.sleep(0.1)


def test_sigkill_random_consumers_every_1_to_3_s(redis_server: RedisServer, crew: Any) -> None:
    settings = redis_server.settings(heartbeat_ttl=2.0, batch=5, high_water=2000)
    team: Crew = crew(settings)
    (team.dir / "slow").touch()
    for _ in range(CONSUMERS):
        team.consumer(delay=0.01)
    producer = team.producer(CHAOS_ITEMS, PCQ_BATCH="100")

    def victims() -> list[int]:
        # Keep four consumers running: each kill is followed by a replacement.
        for _ in range(CONSUMERS - len(team.live_consumers())):
            team.consumer(delay=0.01)
        return [p.pid for p in team.live_consumers()]

    def finished(timeout: float) -> bool:
        time.sleep(timeout)  # the pause between kills is the point, not a synchronisation
        return team.ledger.count(HANDLED) >= CHAOS_ITEMS

    started = time.monotonic()
    log = kill_loop(victims, kills=CHAOS_KILLS, rng=chaos_rng(), finished=finished,
                    deadline=started + 120)
    (team.dir / "slow").unlink()
    victims()  # replace the last victim
    assert team.wait_all([producer], 60) == [0], team.logs()[-3000:]
    # --drain consumers leave once the run is closed and nothing is queued or held
    # anywhere -- which includes the dead consumers' lists, reaped by the living.
    # Every consumer not SIGKILLed (those still running, and those already gone).
    spared = [p for p in team.consumers if p.poll() != -signal.SIGKILL]
    codes = team.wait_all(spared, 90)
    took = time.monotonic() - started

    with redis_server.client() as client:
        tally = settle(team, client, team.run_id())
        left = team.leftovers(client)
    report = team.ledger.report()
    print(f"{len(log)} kills at {log.kills}; {took:.1f}s; {report.summary()}; tally {tally}")
    assert len(log) >= CHAOS_KILLS, f"the run ended after {len(log)} kills"
    assert codes == [0] * len(codes), team.logs()[-3000:]
    assert left == {"queue": 0, "processing": {}, "consumers": []}, left
    assert report.produced == CHAOS_ITEMS
    # A consumer killed after handling but before its buffered ack reached Redis:
    # Redis never saw the ack, the reaper redelivers, the item is handled again
    # with a higher delivery number. So duplicates <= redeliveries, all explained.
    report.assert_sound(duplicates_allowed=tally["redelivered"])
    assert report.recovered >= 1, "no killed consumer held an item: the test proved nothing"
    assert tally["consumed"] == CHAOS_ITEMS and tally["dead_letters"] == 0, tally


def test_redis_sigkilled_and_restarted_3_times(everysec_server: EverysecServer, crew: Any) -> None:
    """AOF everysec: nothing Redis acknowledged is lost; clients are back within 10 s."""
    settings = everysec_server.settings(heartbeat_ttl=2.0, batch=10, high_water=1000)
    team: Crew = crew(settings)
    (team.dir / "slow").touch()
    for _ in range(2):
        team.consumer(delay=0.003)
    producer = team.producer(6000, PCQ_BATCH="50")
    rng = chaos_rng()
    backs: list[dict[str, float]] = []
    for _ in range(3):
        time.sleep(rng.uniform(1, 2))  # let work happen between two crashes
        everysec_server.kill()
        time.sleep(1.0)  # Redis stays down this long (the outage itself)
        everysec_server.restart()  # returns once the AOF is loaded and PING answers
        up = time.monotonic()
        handled, produced = team.ledger.count(HANDLED), team.ledger.count(PRODUCED)
        back: dict[str, float] = {}
        while len(back) < 2 and time.monotonic() - up < 15:
            if "consumer" not in back and team.ledger.count(HANDLED) > handled:
                back["consumer"] = time.monotonic() - up
            if "producer" not in back and (team.ledger.count(PRODUCED) > produced
                                           or producer.poll() is not None):
                back["producer"] = time.monotonic() - up
            time.sleep(0.02)
        backs.append(back)
    (team.dir / "slow").unlink()
    assert team.wait_all([producer], 60) == [0], team.logs()[-3000:]
    codes = team.wait_all(team.consumers, 90)  # a draining consumer may be gone already

    with everysec_server.client() as client:
        tally = settle(team, client, team.run_id())
        left = team.leftovers(client)
    report = team.ledger.report()
    print(f"clients back after each restart (s): {backs}; {report.summary()}; tally {tally}")
    assert all(set(b) == {"consumer", "producer"} for b in backs), backs
    assert max(t for b in backs for t in b.values()) < 10.0, backs
    assert codes == [0, 0], team.logs()[-3000:]
    assert left == {"queue": 0, "processing": {}, "consumers": []}, left
    assert report.produced == 6000
    report.assert_sound(duplicates_allowed=tally["redelivered"] + tally["duplicates"],
                        strict_deliveries=False)


def test_producer_sigkilled_mid_batch_nothing_half_written(
    redis_server: RedisServer, crew: Any,
) -> None:
    batch = 200
    settings = redis_server.settings(heartbeat_ttl=2.0, batch=20, high_water=0)
    team: Crew = crew(settings)
    for _ in range(2):
        team.consumer(drain=False)
    producer = team.producer(10**6, PCQ_BATCH=str(batch))
    deadline = time.monotonic() + 30
    while team.ledger.count(PRODUCED) < 20 * batch:
        assert time.monotonic() < deadline and producer.poll() is None, team.logs()[-2000:]
        time.sleep(0.01)
    producer.send_signal(signal.SIGKILL)  # somewhere in a push
    producer.wait(10)
    acked_ids = {line.split("\t")[0] for line in (team.dir / PRODUCED).read_text().splitlines()}
    run = team.run_id()

    with redis_server.client() as client:
        pushed = int(client.hget(team.keys.run(run), "produced") or 0)
        # Wait until the consumers have handled everything that was pushed.
        deadline = time.monotonic() + 60
        while len(team.ledger.handled_ids()) < pushed:
            assert time.monotonic() < deadline, (pushed, len(team.ledger.handled_ids()))
            time.sleep(0.05)
        tally = read_tally(client, team.keys, run)
        status = queue_status(settings, client)
    assert team.stop_consumers() == [0, 0], team.logs()[-3000:]
    handled = team.ledger.handled_ids()

    print(f"confirmed {len(acked_ids)}, pushed {pushed}, tally {tally}")
    # Whole batches only: what is in Redis is ids 0..pushed-1, a multiple of the batch.
    assert pushed % batch == 0, pushed
    assert handled == {f"{run}:{n}" for n in range(pushed)}
    # Everything confirmed was delivered; at most the WINDOW batches in flight
    # were pushed without their replies reaching the producer (its ledger).
    assert acked_ids <= handled
    assert 0 <= pushed - len(acked_ids) <= batch * WINDOW
    # The rest is reported: the run is still open (never closed) and its tally
    # says exactly how much was produced.
    assert tally["produced"] == pushed and tally["lost"] == 0 and not tally["closed"], tally
    assert status["open_runs"] == 1, status


def test_pcq_produce_sigterm_reports_what_it_did_not_produce(
    redis_server: RedisServer, crew: Any,
) -> None:
    settings = redis_server.settings(heartbeat_ttl=2.0, batch=10, high_water=500)
    team: Crew = crew(settings)
    team.consumer(drain=False, delay=0.002)
    (team.dir / "slow").touch()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pcq.core", "produce", "--items", "100000", "--json", "--batch", "50"],
        env={**team.env, "PCQ_QUEUE": settings.queue}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 30
    while team.ledger.count(HANDLED) < 200:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    tally = json.loads(out.strip().splitlines()[-1])
    assert 0 < tally["produced"] < 100000, tally
    assert f"{tally['lost']} item(s) not yet accounted for" in err
    (team.dir / "slow").unlink()
    with redis_server.client() as client:
        done = settle_open(team, client, tally["run"], tally["produced"])
    assert team.stop_consumers() == [0], team.logs()[-3000:]
    assert done["consumed"] == tally["produced"] and done["lost"] == 0, done
    ids = team.ledger.handled_ids()
    assert ids == {f"{tally['run']}:{n}" for n in range(tally["produced"])}


def settle_open(crew: Crew, client: Any, run: str, produced: int,
                timeout: float = 60.0) -> dict[str, Any]:
    """Wait until a run has ``produced`` items all accounted for."""
    deadline = time.monotonic() + timeout
    while True:
        tally = read_tally(client, crew.keys, run)
        if tally["produced"] == produced and tally["lost"] == 0:
            return tally
        assert time.monotonic() < deadline, f"not settled after {timeout}s: {tally}"
        time.sleep(0.1)
