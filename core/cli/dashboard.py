"""``pcq dashboard``: serve the live web dashboard and the queue's /metrics.

Options are checked here (bad input: one line, exit 2), Redis is asked once
(unreachable or refused: one line, exit 3 or 1), then uvicorn serves
:func:`pcq.core.dashboard.app.create_app` until SIGTERM (exit 0) or Ctrl-C (130). Starlette,
uvicorn and redis are imported only when the command runs.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Annotated

import typer

from pcq.core.cli.options import QueueOption, RedisUrlOption, route_signals
from pcq.core.errors import UsageProblem
from pcq.core.redis_common.settings import RedisSettings

__all__ = ["dashboard", "register"]

DEFAULT_PORT = 8188
GRACE_SECONDS = 2  # open event streams are cut after this at shutdown


def _check_bind(host: str, port: int) -> None:
    """Fail with one line now rather than let uvicorn log a traceback later."""
    if not 0 <= port <= 65535:
        raise UsageProblem(f"--port must be between 0 and 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, addr = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(addr)
    except (OSError, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise UsageProblem(f"cannot listen on --host {host} --port {port}: {why}") from None


def dashboard(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port to listen on.")] = DEFAULT_PORT,
    queue: QueueOption = None,
    rq_queue: Annotated[str, typer.Option("--rq-queue", help="RQ queue name.")] = "pcq-rq",
    redis_url: RedisUrlOption = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between reads of Redis (0.2 to 60).")
    ] = 1.0,
    minutes: Annotated[
        float, typer.Option("--minutes", help="Minutes of history in the chart (1 to 60).")
    ] = 5.0,
) -> None:
    """Live web dashboard of the queue (read-only) with Prometheus gauges at /metrics."""
    if not 0.2 <= interval <= 60:
        raise UsageProblem(f"--interval must be between 0.2 and 60 seconds, got {interval}")
    if not 1 <= minutes <= 60:
        raise UsageProblem(f"--minutes must be between 1 and 60, got {minutes}")
    settings = RedisSettings.from_env().with_overrides(url=redis_url, queue=queue)
    _check_bind(host, port)
    import redis
    import uvicorn

    from pcq.core.dashboard.app import create_app
    from pcq.core.dashboard.feed import Feed
    from pcq.core.monitor.history import ViewHistory
    from pcq.core.monitor.view import read_view
    from pcq.core.redis_common.connection import connect, explain

    client = connect(settings)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise explain(exc, settings) from None

    def read() -> dict:
        try:
            return read_view(client, settings, rq_queue)
        except redis.RedisError as exc:
            raise explain(exc, settings) from None

    feed = Feed(read, ViewHistory(settings.heartbeat_ttl, minutes=minutes), interval)
    shown = f"[{host}]" if ":" in host else host
    print(f"pcq dashboard: http://{shown}:{port}/ (queue {settings.queue}, Redis {settings.where})",
          flush=True)  # fmt: skip
    # uvicorn handles SIGTERM/SIGINT itself, then re-raises the signal to the handler
    # that was there before it: ours, so a stop is an orderly exit (0; 130 for Ctrl-C).
    received = route_signals(threading.Event())
    try:
        uvicorn.run(create_app(feed), host=host, port=port, log_level="warning",
                    access_log=False, timeout_graceful_shutdown=GRACE_SECONDS)  # fmt: skip
    finally:
        client.close()
    raise typer.Exit(130 if signal.SIGINT in received else 0)


def register(app: typer.Typer) -> None:
    """Add ``pcq dashboard`` to the CLI."""
    app.command("dashboard")(dashboard)
