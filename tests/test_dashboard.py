"""``pcq dashboard`` as a process, over HTTP (no browser): the event stream, /metrics, /healthz,
read-only routes, security headers, bad input as one line with exit 2, SIGTERM exit 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from fixtures_redis import RedisServer, free_port
from prometheus_client.parser import text_string_to_metric_families
from redis_procs import Proc, env_for, wait_until

from pcq.core.redis_common.connection import connect
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            return bool(json.load(reply)["healthy"])
    except (OSError, ValueError):
        return False


def first_event(port: int) -> dict:
    """The first view the event stream sends."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/events", timeout=10) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream:
            if line.startswith(b"data: "):
                return json.loads(line[6:])
    raise AssertionError("the stream ended without an event")


def test_dashboard_serves_the_view(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = redis_server.settings()
    with connect(settings) as client:
        producer = ListProducer(client, settings)
        run = producer.open_run()
        producer.put([Item(f"{run}:{n}", f"n{n}", 0.0) for n in range(7)])
        producer.flush()
    port = free_port()
    dash = Proc("core", ["dashboard", "--port", str(port), "--interval", "0.3"], env_for(settings),
                tmp_path)  # fmt: skip
    try:
        wait_until(lambda: healthy(port), 30, "the dashboard to answer")
        view = first_event(port)
        assert view["queue"] == settings.queue and view["length"] == 7 and view["open_runs"] == 1
        assert view["runs"][0]["produced"] == 7 and view["series"][-1][1] == 7
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            families = {f.name: f for f in text_string_to_metric_families(reply.read().decode())}
        assert families["pcq_queue_length"].samples[0].value == 7
        assert families["pcq_queue_open_streams"].samples[0].value == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as reply:
            page = reply.read().decode()
            assert "script-src 'self'" in reply.headers["content-security-policy"]
        assert '<script src="/static/app.js"' in page and "<script>" not in page
        for path in ("/static/uplot.iife.min.js", "/static/uplot.LICENSE", "/static/style.css"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                assert reply.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:  # read-only: no POST anywhere
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"x"),
                                   timeout=5)  # fmt: skip
        assert refused.value.code == 405
        refused.value.close()
        dash.signal(signal.SIGTERM)
        assert dash.wait(15) == 0, dash.stderr
        assert "Traceback" not in dash.stderr
    finally:
        dash.stop()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--port", "70000"], "--port"),
        (["--interval", "0"], "--interval"),
        (["--minutes", "0"], "--minutes"),
        (["--host", "no-such-host.invalid"], "--host"),
        (["--queue", "bad name"], "queue"),
    ],
)
def test_bad_input_is_one_line_exit_2(args: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pcq.core", "dashboard", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_unreachable_redis_is_one_line_exit_3() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    proc = subprocess.run([sys.executable, "-m", "pcq.core", "dashboard", "--redis-url", url,
                           "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 3 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
