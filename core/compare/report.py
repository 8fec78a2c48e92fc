"""Writing a comparison's report folder and printing its table.

``write_report`` produces ``results.json`` (schema in :mod:`pcq.core.compare.schema`),
``report.md``, ``throughput.png`` and ``latency.png`` (matplotlib, Agg backend:
no display needed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console as RichConsole
from rich.table import Table

__all__ = ["plot_latency", "plot_throughput", "render_summary", "write_report"]

_COLORS = {"local": "tab:blue", "redis": "tab:red", "rq": "tab:green", "docker": "tab:purple"}


def _rows(results: dict[str, Any], transport: str) -> list[dict[str, Any]]:
    rows = [r for r in results["summary"] if r["transport"] == transport]
    return sorted(rows, key=lambda r: r["consumers"])


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display, in CI and containers
    import matplotlib.pyplot as plt

    return plt


def _log_if_wide(ax: Any, values: list[float]) -> None:
    """Log scale when the values span more than 20x (RQ next to a local queue)."""
    from matplotlib.ticker import FuncFormatter

    positive = [v for v in values if v and v > 0]
    if positive and max(positive) / min(positive) > 20:
        ax.set_yscale("log")
        # Plain numbers ("600", "0.5"), not "6 x 10^2", on both major and minor ticks.
        plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 10 else f"{v:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


def _consumer_axis(ax: Any, counts: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts)
    ax.set_xticklabels([str(c) for c in counts])
    ax.set_xlabel("consumers")


def _finish(plt: Any, fig: Any, ax: Any, results: dict[str, Any], values: list[float],
            path: Path, *, ylabel: str, title: str, legend: dict[str, Any]) -> None:
    """The axes, labels and legend every plot shares; save to ``path`` and free the figure."""
    _consumer_axis(ax, results["consumers"])
    _log_if_wide(ax, values)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} -- {_workload_title(results)}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(**legend)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_throughput(results: dict[str, Any], path: Path) -> None:
    """items/s against consumers, one line per transport."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    values: list[float] = []
    for transport in results["transports"]:
        rows = _rows(results, transport)
        xs, ys = [r["consumers"] for r in rows], [r["items_per_second"] for r in rows]
        values += ys
        ax.plot(xs, ys, marker="o", label=transport, color=_COLORS.get(transport))
    _finish(plt, fig, ax, results, values, path, ylabel="throughput (items/s)",
            title="Throughput", legend={"title": "transport"})


def plot_latency(results: dict[str, Any], path: Path) -> None:
    """p50 (solid) and p99 (dashed) latency against consumers, per transport."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    values: list[float] = []
    for transport in results["transports"]:
        rows = _rows(results, transport)
        xs = [r["consumers"] for r in rows]
        color = _COLORS.get(transport)
        for q, style in (("p50", "-"), ("p99", "--")):
            ys = [r["latency_ms"][q] for r in rows]
            values += [y for y in ys if y is not None]
            ax.plot(xs, ys, style, marker="o", color=color, label=f"{transport} {q}")
    _finish(plt, fig, ax, results, values, path, ylabel="latency produced -> handled (ms)",
            title="Latency p50 / p99", legend={"ncol": 2, "fontsize": 8})


def _workload_title(results: dict[str, Any]) -> str:
    w = results["workload"]
    return f"{w['items']} items, work {w['work']}, {w['payload_bytes']} B, batch {w['batch']}"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _markdown(results: dict[str, Any]) -> str:
    m, w = results["machine"], results["workload"]
    lines = [
        "# pcq compare", "",
        f"Workload: {_workload_title(results)}; repeat {results['repeat']} (medians shown).", "",
        (
            f"Machine: {m['cpus']} CPU(s), {m['platform']}, Python {m['python']}; "
            f"Redis: {results['redis']['source'] or 'none'} {results['redis']['version'] or ''}; "
            f"RQ worker: {results['rq_worker']}."
        ),
        "",
        "| transport | consumers | items/s | p50 ms | p95 ms | p99 ms | fairness | redelivered | lost | peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["summary"]:
        lat = r["latency_ms"]
        lines.append(
            f"| {r['transport']} | {r['consumers']} | {_fmt(r['items_per_second'])} | "
            f"{_fmt(lat['p50'], 2)} | {_fmt(lat['p95'], 2)} | {_fmt(lat['p99'], 2)} | "
            f"{r['fairness']:.3f} | {r['redelivered']} | {r['lost']} | {_fmt(r['peak_rss_mib'])} |"
        )
    lines += ["", "![throughput](throughput.png)", "", "![latency](latency.png)", ""]
    for skip in results["skipped"]:
        lines.append(f"- skipped **{skip['transport']}**: {skip['reason']}")
    lines += [
        "",
        (
            "Throughput: items handled / (last handled - first produced). Latency: produced -> "
            "handler returned. Fairness: Jain's index of items per consumer (1 = even). "
            f"Items per run: {w['items']}."
        ),
        "",
    ]
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write the report folder; return the paths written by name."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / "results.json",
        "report": out / "report.md",
        "throughput": out / "throughput.png",
        "latency": out / "latency.png",
    }
    paths["results"].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    paths["report"].write_text(_markdown(results), encoding="utf-8")
    plot_throughput(results, paths["throughput"])
    plot_latency(results, paths["latency"])
    return paths


def render_summary(results: dict[str, Any], stream: TextIO) -> None:
    """The end-of-run Rich table: one row per transport and consumer count."""
    table = Table(title=f"pcq compare: {_workload_title(results)}", title_justify="left")
    for name in ("transport", "consumers", "items/s", "p50 ms", "p95 ms", "p99 ms",
                 "fairness", "redeliv.", "lost", "RSS MiB"):
        table.add_column(name, justify="left" if name == "transport" else "right")
    previous = None
    for r in results["summary"]:
        if previous is not None and r["transport"] != previous:
            table.add_section()
        previous = r["transport"]
        lat = r["latency_ms"]
        table.add_row(
            r["transport"], str(r["consumers"]), _fmt(r["items_per_second"], 0),
            _fmt(lat["p50"], 2), _fmt(lat["p95"], 2), _fmt(lat["p99"], 2),
            f"{r['fairness']:.3f}", str(r["redelivered"]), str(r["lost"]), _fmt(r["peak_rss_mib"]),
        )
    # Off a terminal Rich assumes 80 columns and would squeeze the figures to "1,9…".
    width = None if stream.isatty() else 120
    RichConsole(file=stream, highlight=False, width=width).print(table)
