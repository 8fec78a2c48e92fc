"""One module per peer system for ``benchmarks/bench_peers.py`` (not part of the pcq package).

Each module runs inside its system's own virtualenv (``benchmarks/.venvs/<venv>``),
as ``python -m peers.<module>`` with ``benchmarks/`` on ``PYTHONPATH``, and
prints one JSON line: see :mod:`peers.drive`. The orchestrator never imports
them: their libraries live in other virtualenvs.
"""
