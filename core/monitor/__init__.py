"""What is going on in a queue, read from Redis once and shown many ways.

Data flow (read-only, nothing here writes to Redis)::

    Redis --view.read_view()--> one plain dict (the monitoring view)
                 |                 |                 |
                 v                 v                 v
           pcq status/watch   history.ViewHistory   gauges.ViewCollector
           (core/cli/status)  (chart series, dead   (queue-level Prometheus
                              consumers kept)       gauges for /metrics)
                                   \\               /
                                    core/dashboard/ (pcq dashboard: SSE + /metrics)

The terminal and the web page only render the view; the Redis reads live in
:mod:`pcq.core.monitor.view` (which delegates the transports' own reads to
:mod:`pcq.core.redis_list.status` and :mod:`pcq.core.rq_jobs.status`).
"""
