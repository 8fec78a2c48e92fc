"""The schema of ``results.json`` (version ``pcq-compare/1``) and a small validator.

Documented in README ("Compare" section). Kept as data -- one spec per object,
field -> allowed types -- so the documentation, the writer and the tests
agree, without a jsonschema dependency.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SCHEMA", "validate_results"]

SCHEMA = "pcq-compare/1"

_NUM = (int, float)
_OPT_NUM = (int, float, type(None))
_LATENCY = {"p50": _OPT_NUM, "p95": _OPT_NUM, "p99": _OPT_NUM}
_TOP: dict[str, Any] = {
    "schema": str,
    "created_at": str,
    "machine": {"cpus": int, "platform": str, "python": str},
    "workload": {"items": int, "payload_bytes": int, "work": str, "batch": int},
    "consumers": [int],
    "transports": [str],
    "repeat": int,
    "redis": {"source": (str, type(None)), "version": (str, type(None))},
    "rq_worker": str,
    "skipped": [{"transport": str, "reason": str}],
    "runs": [{
        "transport": str, "consumers": int, "repeat": int, "items": int, "consumed": int,
        "lost": int, "duplicates": int, "redelivered": int, "dead_letters": int,
        "seconds": _NUM, "wall_seconds": _NUM, "items_per_second": _NUM,
        "latency_ms": dict(_LATENCY, max=_OPT_NUM), "per_consumer": "counts",
        "fairness": _NUM, "peak_rss_mib": _OPT_NUM, "notes": [str],
    }],
    "summary": [{
        "transport": str, "consumers": int, "repeats": int, "items_per_second": _NUM,
        "latency_ms": _LATENCY, "fairness": _NUM, "redelivered": int, "lost": int,
        "peak_rss_mib": _OPT_NUM,
    }],
}


def _check(value: Any, spec: Any, path: str, errors: list[str]) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            errors.append(f"{path}: expected an object")
            return
        for key, sub in spec.items():
            if key not in value:
                errors.append(f"{path}.{key}: missing")
            else:
                _check(value[key], sub, f"{path}.{key}", errors)
    elif isinstance(spec, list):
        if not isinstance(value, list):
            errors.append(f"{path}: expected an array")
            return
        for i, element in enumerate(value):
            _check(element, spec[0], f"{path}[{i}]", errors)
    elif spec == "counts":  # consumer id -> items handled
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and type(v) is int and v >= 0 for k, v in value.items()
        ):
            errors.append(f"{path}: expected an object of consumer -> count >= 0")
    else:
        kinds = spec if isinstance(spec, tuple) else (spec,)
        # bool is an int subclass in Python, never a valid count here
        if isinstance(value, bool) or not isinstance(value, kinds):
            names = "/".join(k.__name__ for k in kinds)
            errors.append(f"{path}: expected {names}, got {type(value).__name__}")


def validate_results(data: Any) -> list[str]:
    """Return every way ``data`` departs from the schema (empty list: valid)."""
    errors: list[str] = []
    _check(data, _TOP, "$", errors)
    if not errors:
        if data["schema"] != SCHEMA:
            errors.append(f"$.schema: expected {SCHEMA!r}")
        runs = {(r["transport"], r["consumers"]) for r in data["runs"]}
        rows = {(s["transport"], s["consumers"]) for s in data["summary"]}
        if runs != rows:
            errors.append("$.summary: must have one row per (transport, consumers) in $.runs")
        for i, run in enumerate(data["runs"]):
            if run["consumed"] + run["lost"] + run["dead_letters"] != run["items"]:
                errors.append(f"$.runs[{i}]: consumed + lost + dead_letters != items")
    return errors
