"""Redis SIGKILLed and restarted mid-run (AOF, appendfsync always): nothing acked is lost."""

from __future__ import annotations

import time
from pathlib import Path

from fixtures_redis import RedisServer
from redis_procs import env_for, only_run, processes, processing_lists, registered, wait_until

from pcq.core.redis_common.keys import Keys
from pcq.core.redis_list.acked import acked_count, acked_ids

ITEMS = 2000


def test_redis_killed_and_restarted_mid_run(tmp_path: Path, fresh_redis_server: RedisServer) -> None:
    server = fresh_redis_server
    settings = server.settings(heartbeat_ttl=2.0)
    keys = Keys(settings.queue)
    env = env_for(settings, PCQ_REDIS_RETRIES="20")
    client = server.client()
    try:
        with processes(tmp_path) as start:
            work = ("--drain", "--quiet", "--batch", "10", "--max-delay", "0.002")
            consumers = [start("consumer", *work, env=env) for _ in range(2)]
            wait_until(lambda: len(registered(client, settings)) == 2, 20, "2 consumers")
            producer = start("producer", "--items", str(ITEMS), "--batch", "20", "--json", env=env)
            run = wait_until(lambda: only_run(client, settings), 20, "the run")
            wait_until(lambda: acked_count(client, keys, run) >= 200, 60, "200 acks")
            before = acked_ids(client, keys, run)
            server.kill()
            time.sleep(1.0)  # the outage itself: clients must retry through it
            server.restart()
            client.close()  # its connection died with the server
            after_restart = acked_ids(client, keys, run)
            assert before <= after_restart  # acknowledged before the kill = durable
            assert producer.wait(120) == 0, producer.stderr
            for c in consumers:
                assert c.wait(60) == 0, c.stderr
            tally = producer.json()
            logs = producer.stderr + "".join(c.stderr for c in consumers)
        final = acked_ids(client, keys, run)
        assert (tally["produced"], tally["consumed"], tally["lost"]) == (ITEMS, ITEMS, 0)
        assert final == {f"{run}:{n}" for n in range(ITEMS)}
        assert "unreachable" in logs and "retry 1/20" in logs  # they did see the outage
        assert "Traceback" not in logs
        assert processing_lists(client, settings) == {}
    finally:
        client.close()
