"""Start rq-dashboard with its passwords read from Docker secret files.

rq-dashboard takes the Redis URL and the HTTP basic-auth password only from its
command line (``ps`` shows it) or environment variables (``docker inspect``
shows them). This launcher reads them from files instead and hands them to
rq-dashboard's own click command as defaults (``default_map``): they live in
this process's memory only. Other arguments pass through unchanged.

Environment (no secrets in it):
  PCQ_RQ_DASHBOARD_REDIS_URL      redis[s]://rq@redis:6379/0 (user, no password)
  PCQ_REDIS_PASSWORD_FILE      the Redis user's password file
  PCQ_REDIS_CA_FILE            CA certificate, for a rediss:// URL
  PCQ_RQ_DASHBOARD_USER           HTTP basic auth user (empty: no auth)
  PCQ_RQ_DASHBOARD_PASSWORD_FILE  its password file
"""

from __future__ import annotations

import os
import sys
from urllib.parse import quote, urlsplit


def _secret(var: str) -> str:
    path = os.environ.get(var, "")
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.readline().strip()
    except OSError as exc:
        sys.exit(f"rq-dashboard launch: {var}={path!r}: {exc.strerror}")
    if not value:
        sys.exit(f"rq-dashboard launch: {var}={path!r} is empty")
    return value


def _redis_url() -> str:
    parts = urlsplit(os.environ.get("PCQ_RQ_DASHBOARD_REDIS_URL", "redis://rq@redis:6379/0"))
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(_secret('PCQ_REDIS_PASSWORD_FILE'), safe='')}@{host}"
    query = parts.query
    if os.environ.get("PCQ_REDIS_CA_FILE"):
        query = f"{query}&" if query else ""
        query += f"ssl_ca_certs={quote(os.environ['PCQ_REDIS_CA_FILE'])}"
    return parts._replace(netloc=netloc, query=query).geturl()


def main() -> None:
    from rq_dashboard.cli import run

    defaults = {"redis_url": [_redis_url()]}
    user = os.environ.get("PCQ_RQ_DASHBOARD_USER", "")
    if user:
        defaults.update(username=user, password=_secret("PCQ_RQ_DASHBOARD_PASSWORD_FILE"))
    run.main(args=sys.argv[1:], prog_name="rq-dashboard", default_map=defaults)


if __name__ == "__main__":
    main()
