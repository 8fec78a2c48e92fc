"""``pcq compare``: one workload through every transport, measured side by side.

Modules: :mod:`~pcq.core.compare.workload` (items and work), one runner per
transport (:mod:`~pcq.core.compare.local_runner`, :mod:`~pcq.core.compare.redis_runner`,
:mod:`~pcq.core.compare.rq_runner`, :mod:`~pcq.core.compare.docker_runner` with its
container side :mod:`~pcq.core.compare.docker_side`), :mod:`~pcq.core.compare.metrics`,
:mod:`~pcq.core.compare.run` (the loop), :mod:`~pcq.core.compare.report` and
:mod:`~pcq.core.compare.schema` (results.json), :mod:`~pcq.core.compare.redis_server`
(the throwaway server of the embedded default).
"""
