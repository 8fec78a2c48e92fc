"""RQ's settings module for ``rq worker`` and ``rq info`` in containers.

Stock RQ takes its Redis from ``--url`` (a command line: ``ps`` shows it) or
``RQ_REDIS_URL`` (an environment variable: ``docker inspect`` shows it). Neither
may carry a password here, so the compose and stack files set
``RQ_CONFIG=pcq.core.rq_jobs.rq_config`` instead: RQ imports this module and reads
its ``REDIS_URL``, which :class:`~pcq.core.redis_common.settings.RedisSettings`
builds from ``REDIS_URL`` (user, no password), ``PCQ_REDIS_PASSWORD_FILE`` (a
Docker secret) and ``PCQ_REDIS_CA_FILE`` (``rediss://``). The password lives in
this process's memory only.
"""

from __future__ import annotations

import sys

from pcq.core.errors import UsageProblem
from pcq.core.redis_common.settings import RedisSettings

try:
    REDIS_URL = RedisSettings.from_env().secret_url()
except UsageProblem as exc:  # one line, exit 2, as everywhere in pcq
    print(f"pcq: error: {exc}", file=sys.stderr)
    raise SystemExit(2) from None
