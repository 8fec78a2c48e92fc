"""Checks that no password shows where anyone with Docker access could read it.

A password given as an environment variable is in ``docker inspect`` (and in
``/proc/PID/environ``); one given on a command line is in ``ps`` inside the
container and on the host. pcq's containers get them as secret files instead
(``scripts/secrets``). :func:`exposed` looks for every password of a secrets
directory in a container's whole ``docker inspect`` document and in every
process's command line and environment inside it.

One exception, on purpose: ``redis-admin`` (the Redis healthcheck and the
operators' CLI) hands the admin password to ``redis-cli`` in ``REDISCLI_AUTH``,
the way redis-cli reads it without an argv; that ``redis-cli`` process lives
for one command, and only its own environment holds it (never the container's
settings). Its environment is not searched; its command line is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Prints, per process: its command line, then its environment (NULs -> spaces).
_PS = r"""
for d in /proc/[0-9]*; do
  [ -r "$d/cmdline" ] || continue
  cmd=$(tr '\0' ' ' < "$d/cmdline" 2>/dev/null) || continue
  [ -n "$cmd" ] || continue
  echo "CMD ${d#/proc/} $cmd"
  case $cmd in redis-cli*) continue ;; esac
  echo "ENV ${d#/proc/} $(tr '\0' ' ' < "$d/environ" 2>/dev/null)"
done
"""


def passwords(secrets_dir: Path) -> dict[str, str]:
    """Every password file of a secrets directory (``scripts/secrets``): name -> value."""
    found = {p.name: p.read_text(encoding="utf-8").strip() for p in secrets_dir.glob("*password")}
    assert found and all(found.values()), f"no passwords in {secrets_dir}"
    return found


def process_listing(container: Any) -> str:
    """What ``ps`` (and ``/proc/*/environ``) shows inside a running container."""
    result = container.exec_run(["sh", "-c", _PS])
    text: str = result.output.decode(errors="replace")
    assert result.exit_code == 0 and "CMD 1 " in text, text[-500:]
    return text


def exposed(container: Any, secrets: dict[str, str]) -> list[str]:
    """Where ``container`` shows a password: ``["<name> in inspect", ...]`` (empty: nowhere)."""
    container.reload()
    inspect = json.dumps(container.attrs)
    found = [f"{name} in docker inspect" for name, value in secrets.items() if value in inspect]
    if container.status == "running":
        listing = process_listing(container)
        found += [f"{name} in a process of {container.name}" for name, value in secrets.items()
                  if value in listing]
    return found
