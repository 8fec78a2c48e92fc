"""``pcq dashboard``: the monitoring view as a live web page, and queue gauges for Prometheus.

Data flow (one poller, however many browsers are open)::

    Redis --read_view() every --interval s, in a worker thread--> Feed (feed.py)
                                                                   |  ViewHistory adds the
                                                                   |  chart series and the
                                                                   |  consumers that left
          browser <-- GET /events (server-sent events, one JSON view per tick) --+
          browser <-- GET / and /static/* (index.html, app.js, style.css, uPlot)  |
       Prometheus <-- GET /metrics (ViewCollector: queue gauges of the latest view)
          compose <-- GET /healthz (200 while the last read succeeded)

Read-only: every route is a GET, and nothing writes to Redis. The page is
rendered in the browser with ``textContent`` only (ids and reasons come from
Redis), under a Content-Security-Policy that allows this origin's scripts alone.
"""
