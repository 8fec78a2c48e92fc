"""pcq core: the producer/consumer pattern, independent of the queue it runs over.

The layers, each importing only the ones below it (import-linter contracts in
pyproject.toml; docs/architecture.md has the picture)::

    cli/                      the pcq command (produce/consume plug in from the roles)
    compare/                  pcq compare: one workload through every transport
    local/ redis_list/ rq_jobs/ fork_demo.py
                              the transports (never importing each other), the fork demo
    redis_common/             what both Redis transports share
    ledger.py work.py names.py
                              --ledger files, the demo's work, the demo's names
    pattern.py                produce() and consume(), written once
    transport.py console.py errors.py
                              the seam (Item, Producer, Consumer), output, errors
"""

__version__ = "0.1.0"
