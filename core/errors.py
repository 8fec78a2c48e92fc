"""Errors that end a command with a one-line message instead of a traceback."""

from __future__ import annotations


class PcqError(Exception):
    """An expected failure: print ``str(self)`` on one line, exit ``exit_code``."""

    exit_code = 1


class UsageProblem(PcqError):
    """Bad input from the user (options, files): exit code 2."""

    exit_code = 2


class ConnectionFailed(PcqError):
    """A server stayed unreachable after all retries."""

    exit_code = 3


class RedisFull(PcqError):
    """Redis refused a write: it is at its ``maxmemory`` (policy ``noeviction``).

    Producers treat it as backpressure (wait, retry, give up after a while);
    consumers' steps never get it, as their scripts may run on a full Redis.
    """
