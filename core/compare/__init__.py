"""``pcq compare``: one workload through every transport, measured side by side.

Modules: :mod:`~core.compare.workload` (items and work), one runner per
transport (:mod:`~core.compare.local_runner`, :mod:`~core.compare.redis_runner`,
:mod:`~core.compare.rq_runner`, :mod:`~core.compare.docker_runner` with its
container side :mod:`~core.compare.docker_side`), :mod:`~core.compare.metrics`,
:mod:`~core.compare.run` (the loop), :mod:`~core.compare.report` and
:mod:`~core.compare.schema` (results.json), :mod:`~core.compare.redis_server`
(the throwaway server of the embedded default).
"""
