"""``pcq dead`` list/show/requeue/purge and the dead-letter retention, on a real Redis.

Dead letters are made the real way: items pushed by a ``ListProducer`` and
failed by a consumer's handler (``max_deliveries`` 1). Each command runs
through the console-script entry point, as a user would; the runs' tallies
(:mod:`pcq.core.redis_list.tally`) judge whether requeued items are consumed
exactly once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures_redis import RedisServer, quiet

from pcq.consumer.run import run_consumer
from pcq.core import cli
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import dead_record
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.dead_letters import newest, requeue
from pcq.core.redis_list.dead_records import DeadLetter
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item

pytestmark = pytest.mark.timeout(120)
HOSTILE = "poison \x1b[31mred\x1b[0m \u202eevil \x07bell"


def pcq(capsys: pytest.CaptureFixture[str], settings: RedisSettings, *args: str,
        ) -> tuple[int, str, str]:  # fmt: skip
    """``pcq dead ARGS --queue Q --redis-url URL`` in-process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["dead", *args, "--queue", settings.queue, "--redis-url", settings.url])
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out, err


def produce(settings: RedisSettings, bodies: list[str]) -> str:
    """Push ``bodies`` as one closed run; return the run id."""
    client = connect(settings)
    producer = ListProducer(client, settings)
    try:
        run = producer.open_run()
        producer.put([Item(f"{run}:{n}", body, time.time()) for n, body in enumerate(bodies)])
        producer.end_stream()
    finally:
        producer.close()
        client.close()
    return run


def failing(item: Item) -> None:
    if item.body.startswith("poison"):
        raise ValueError(f"refused {item.body!r}")


def drain(settings: RedisSettings, handler: Any = failing) -> None:
    run_consumer(settings, quiet(), drain=True, handler=handler, poll=0.1)


@pytest.fixture
def dead_settings(redis_server: RedisServer) -> RedisSettings:
    return redis_server.settings(heartbeat_ttl=2.0, max_deliveries=1, batch=5)


def tally(settings: RedisSettings, run: str) -> dict[str, Any]:
    with connect(settings) as client:
        return read_tally(client, Keys(settings.queue), run)


def test_list_is_newest_first_filters_and_json(
    capsys: Any, dead_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    first = produce(dead_settings, ["poison a", "fine", "poison b"])
    second = produce(dead_settings, ["poison c"])
    drain(dead_settings)
    code, out, err = pcq(capsys, dead_settings, "list", "--json")
    assert code == 0, err
    listing = json.loads(out)
    ids = [d["id"] for d in listing["letters"]]
    assert ids == [f"{second}:0", f"{first}:2", f"{first}:0"]  # newest first
    one = listing["letters"][0]
    assert one["deliveries"] == 1 and one["consumer"] and one["payload_bytes"] > 0
    assert "refused 'poison c'" in one["reason"] and len(one["dlid"]) == 12
    assert listing["total"] == 3 and listing["stats"]["dead_letters"] == 3
    code, out, _ = pcq(capsys, dead_settings, "list", "--json", "--run", first, "--reason", "B'")
    assert [d["id"] for d in json.loads(out)["letters"]] == [f"{first}:2"]
    code, out, _ = pcq(capsys, dead_settings, "list", "--limit", "2")
    assert code == 0 and "3, 2 shown" in out and f"{second}:0" in out and f"{first}:0" not in out


def test_show_escapes_hostile_payloads(capsys: Any, dead_settings: RedisSettings) -> None:
    run = produce(dead_settings, [HOSTILE])
    drain(dead_settings)
    code, out, err = pcq(capsys, dead_settings, "show", f"{run}:0")
    assert code == 0, err
    assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out
    assert "\\x1b[31mred" in out or "\\u001b[31mred" in out
    assert "\\u202eevil" in out and f"{run}:0" in out
    code, out, _ = pcq(capsys, dead_settings, "show", f"{run}:0", "--json")
    record = json.loads(out)
    assert out.isascii() and json.loads(record["payload"])["body"] == HOSTILE
    code, out, _ = pcq(capsys, dead_settings, "show", record["dlid"][:8], "--max-chars", "20")
    assert code == 0 and "more characters" in out


def test_bad_input_is_one_line_never_a_traceback(capsys: Any, dead_settings: RedisSettings) -> None:
    produce(dead_settings, ["poison"])
    drain(dead_settings)
    with redis.Redis.from_url(dead_settings.url) as client:
        client.rpush(Keys(dead_settings.queue).dead, b"{not json \x1b]0;owned\x07")
    corrupt = DeadLetter.parse(b"{not json \x1b]0;owned\x07").dlid
    cases = [
        (("show", "0123456789ab"), 1, "no dead letter 0123456789ab"),
        (("show", "no such thing"), 2, "neither a dead-letter id"),
        (("show", corrupt), 1, "is corrupt"),
        (("list", "--older-than", "3 fortnights"), 2, "--older-than"),
        (("list", "--run", "a b"), 2, "--run"),
        (("requeue",), 2, "say which dead letters"),
        (("requeue", "--all", "--run", "x"), 2, "--all takes no ids"),
        (("purge", "--reason", "  "), 2, "--reason needs"),
    ]
    for args, want, text in cases:
        code, out, err = pcq(capsys, dead_settings, *args)
        assert code == want, (args, out, err)
        assert len(err.strip().splitlines()) == 1 and err.startswith("pcq: error: "), (args, err)
        assert text in err and "Traceback" not in err and "\x1b" not in err, (args, err)
    code, out, err = pcq(capsys, dead_settings, "list")  # a corrupt record is listed, not fatal
    assert code == 0 and corrupt in out and "\x1b" not in out
    code, out, err = pcq(capsys, dead_settings, "requeue", "--all")
    assert code == 1 and "requeued 1 of 2" in out and "not requeued" in out


def test_requeue_one_then_consumed_once(capsys: Any, dead_settings: RedisSettings) -> None:
    run = produce(dead_settings, ["poison x", "fine", "poison y"])
    drain(dead_settings)
    before = tally(dead_settings, run)
    assert (before["consumed"], before["dead_letters"], before["lost"]) == (1, 2, 0)
    code, out, err = pcq(capsys, dead_settings, "requeue", f"{run}:0")
    assert code == 0 and "requeued 1 of 1" in out, err
    middle = tally(dead_settings, run)
    assert (middle["dead_letters"], middle["lost"], middle["requeued"]) == (1, 1, 1)  # in flight
    drain(dead_settings, handler=lambda item: None)  # the cause is fixed
    after = tally(dead_settings, run)
    assert (after["produced"], after["consumed"], after["dead_letters"]) == (3, 2, 1), after
    assert (after["lost"], after["duplicates"]) == (0, 0)
    code, _, err = pcq(capsys, dead_settings, "requeue", f"{run}:0")
    assert code == 1 and f"no dead letter {run}:0" in err


def test_requeue_races_a_running_consumer(dead_settings: RedisSettings) -> None:
    """Requeue while the consumer fails (and re-dead-letters) items, then after the fix."""
    bodies = [("poison " if n % 4 == 0 else "") + f"item {n}" for n in range(200)]
    broken, handled, halt = threading.Event(), Counter[str](), threading.Event()
    broken.set()

    def handler(item: Item) -> None:
        if broken.is_set():
            failing(item)
        handled[item.id] += 1

    consumer = threading.Thread(target=run_consumer, args=(dead_settings, quiet()),
                                kwargs={"handler": handler, "stop": halt, "poll": 0.05})
    consumer.start()
    client = connect(dead_settings)
    keys = Keys(dead_settings.queue)
    try:
        run = produce(dead_settings, bodies)
        deadline = time.monotonic() + 60
        requeued = 0
        while True:  # requeue whatever is dead, as fast as we can, while it keeps dying
            outcomes = [requeue(client, keys, dead_settings, d) for d in newest(client, keys)]
            requeued += outcomes.count("requeued")
            if requeued >= 100:
                broken.clear()  # the fix is deployed
            done = tally(dead_settings, run)
            if not broken.is_set() and done["lost"] == 0 and done["dead_letters"] == 0:
                break
            assert time.monotonic() < deadline, done
            time.sleep(0.01)
    finally:
        halt.set()
        consumer.join(30)
        client.close()
    assert (done["produced"], done["consumed"], done["duplicates"]) == (200, 200, 0), done
    assert done["requeued"] == requeued >= 100
    assert set(handled) == {f"{run}:{n}" for n in range(200)}
    assert set(handled.values()) == {1}, "an item was handled twice"


def test_two_requeues_of_one_record_act_once(dead_settings: RedisSettings) -> None:
    produce(dead_settings, ["poison"])
    drain(dead_settings)
    keys = Keys(dead_settings.queue)
    with connect(dead_settings) as client:
        (letter,) = list(newest(client, keys))
        outcomes = [requeue(client, keys, dead_settings, letter) for _ in range(2)]
        assert outcomes[0] == "requeued" and outcomes[1].startswith("gone")
        assert client.llen(keys.queue) == 1


def test_purge_by_age_filter_and_all(capsys: Any, dead_settings: RedisSettings) -> None:
    run = produce(dead_settings, ["poison a", "poison b", "poison c"])
    drain(dead_settings)
    keys = Keys(dead_settings.queue)
    old = dead_record(b"{}", "ancient", "c1", time.time() - 7200, id=f"{run}:99", run=run)
    with redis.Redis.from_url(dead_settings.url) as client:
        client.lpush(keys.dead, old)
    code, out, err = pcq(capsys, dead_settings, "purge", "--older-than", "1h", "--yes")
    assert code == 0 and "purged 1 dead letter" in out, err
    code, out, err = pcq(capsys, dead_settings, "purge", "--reason", "'poison b'")  # no terminal
    assert code == 2 and "Refusing without --yes" in err
    code, out, err = pcq(capsys, dead_settings, "purge", "--reason", "'poison b'", "--yes")
    assert code == 0 and "purged 1" in out
    code, out, err = pcq(capsys, dead_settings, "purge", "--all", "-y")
    assert code == 0 and "purged 2" in out
    with redis.Redis.from_url(dead_settings.url) as client:
        assert client.llen(keys.dead) == 0
        assert int(client.hget(keys.stats, "dead_purged")) == 4
    assert tally(dead_settings, run)["dead_letters"] == 3  # history stays exact


def test_retention_caps_count_and_age_and_counts_the_trimmed(
    capsys: Any, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = redis_server.settings(heartbeat_ttl=2.0, max_deliveries=1, dead_max=3)
    produce(settings, [f"poison {n}" for n in range(5)])
    drain(settings)
    keys = Keys(settings.queue)
    with redis.Redis.from_url(settings.url) as client:
        assert client.llen(keys.dead) == 3
        assert int(client.hget(keys.stats, "dead_trimmed")) == 2
        for n in range(2):  # two records of yesterday at the head (the oldest end)
            client.lpush(keys.dead, dead_record(b"{}", "old", "c", time.time() - 86400, id=f"r:{n}"))
    monkeypatch.setenv("PCQ_DEAD_MAX_AGE", "3600")
    code, out, err = pcq(capsys, settings, "list", "--json")
    assert code == 0 and "retention trimmed 2 old dead letter(s)" in err
    listing = json.loads(out)
    assert listing["total"] == 3 and listing["stats"]["dead_trimmed"] == 4


def test_dead_commands_start_without_redis(tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    code = (
        "import json, sys\nfrom pcq.core.cli import main\n"
        "for args in (['dead', '--help'], ['dead', 'purge'], ['dead', 'list', '--older-than', 'x']):\n"
        "    try:\n        main(args)\n    except SystemExit:\n        pass\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('redis', 'rq'))))\n"
    )
    subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, check=False)
    assert json.loads(out.read_text()) == []
