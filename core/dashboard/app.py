"""The dashboard's web application (Starlette): the page, its event stream, /metrics, /healthz.

:func:`create_app` wires a running :class:`~pcq.core.dashboard.feed.Feed` to
the routes; ``pcq dashboard`` (:mod:`pcq.core.cli.dashboard`) serves the app
with uvicorn. Every route is a GET: the dashboard only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pcq.core.dashboard.feed import Feed
from pcq.core.monitor.gauges import ViewCollector

__all__ = ["STATIC", "create_app"]

STATIC = Path(__file__).with_name("static")
# Only this origin's files; no inline script or style, no framing, no form posts.
SECURITY_HEADERS = [
    (b"content-security-policy",
     (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
      b"connect-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]  # fmt: skip


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(feed: Feed) -> Starlette:
    """The dashboard for ``feed`` (started with the app, cancelled at shutdown)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ViewCollector(lambda: feed.latest))

    async def index(_: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})

    async def events(_: Request) -> Response:
        async def stream() -> AsyncIterator[bytes]:
            yield b"retry: 2000\n\n"  # the browser reconnects after 2 s if the server went
            seen = 0
            while True:
                seen = await feed.next_after(seen)
                yield b"data: " + feed.encoded + b"\n\n"

        headers = {"cache-control": "no-store", "x-accel-buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        healthy = feed.latest is not None and feed.error is None
        body = {"healthy": healthy, "error": feed.error, "version": feed.version}
        return JSONResponse(body, status_code=200 if healthy else 503)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(feed.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    routes = [
        Route("/", index), Route("/events", events), Route("/metrics", metrics),
        Route("/healthz", healthz), Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]  # fmt: skip
    return Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
