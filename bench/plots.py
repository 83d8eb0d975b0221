"""Pure. Plots for the HTML report, rendered by matplotlib to inline SVG strings."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

__all__ = ["latency_plot", "overhead_plot", "throughput_plot"]


def _figure(height: float, columns: int = 1) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; SVG text only
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, small
    return plt.subplots(1, columns, figsize=(8.0, height))


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def latency_plot(records: list[dict[str, Any]], operation: str) -> str | None:
    """Box plot (outliers kept) of one operation's latency per TRE, µs on a log axis."""
    rows = [r for r in records if r["operation"] == operation and r["samples"]]
    if not rows:
        return None
    fig, ax = _figure(0.45 * len(rows) + 1.2)
    data = [[s / 1000 for s in r["samples"]] for r in rows]
    ax.boxplot(data, orientation="horizontal", showfliers=True, widths=0.6)
    for i, values in enumerate(data, start=1):
        ax.plot(values, [i] * len(values), "|", alpha=0.35, color="tab:blue")
    ax.set_yticks(range(1, len(rows) + 1), [r["tre"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("µs per operation (log scale)")
    ax.set_title(operation)
    ax.grid(axis="x", which="both", alpha=0.3)
    return _svg(fig)


def overhead_plot(records: list[dict[str, Any]]) -> str | None:
    """Bars: median of each operation over the median of its TRE's raw transport."""
    grouped: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for r in records:
        if r.get("overhead_vs_raw") is not None and not r["raw"]:
            grouped[r["tre"]].append((r["operation"], float(r["overhead_vs_raw"])))
    if not grouped:
        return None
    labels, values = [], []
    for tre, items in grouped.items():
        for operation, value in items:
            labels.append(f"{tre} — {operation}")
            values.append(value)
    fig, ax = _figure(0.35 * len(labels) + 1.2)
    ax.barh(range(len(labels)), values, color="tab:orange")
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("× the TRE's raw transport (median / median, log scale)")
    ax.set_title("Overhead against the raw transport")
    ax.grid(axis="x", which="both", alpha=0.3)
    return _svg(fig)


def throughput_plot(section: dict[str, Any]) -> str | None:
    """The provisioning-throughput curve: provisions/s against devices at once (left, with
    the cores busy), latency median and p95 per provisioning (right)."""
    levels = [lv for lv in section["levels"] if lv["throughput_per_s"] is not None]
    if not levels:
        return None
    fig, (left, right) = _figure(3.4, columns=2)
    x = [lv["concurrency"] for lv in levels]
    left.plot(x, [lv["throughput_per_s"] for lv in levels], "o-", color="tab:blue")
    left.set_xlabel("devices provisioning at once")
    left.set_ylabel("successful provisionings / s", color="tab:blue")
    left.set_ylim(bottom=0)
    cores = section["environment"].get("cores")
    busy = [lv["cores_busy"] for lv in levels]
    if all(b is not None for b in busy):
        twin = left.twinx()
        twin.plot(x, busy, "s--", color="tab:gray", alpha=0.7)
        twin.set_ylabel("cores busy (CPU s / wall s)", color="tab:gray")
        twin.set_ylim(0, max([*busy, float(cores or 1)]) * 1.15)
        if cores:
            twin.axhline(cores, color="tab:gray", linewidth=0.8, linestyle=":")
    left.set_title("Throughput of one server")
    timed = [lv for lv in levels if lv["latency_ms"]]
    tx = [lv["concurrency"] for lv in timed]
    right.plot(tx, [lv["latency_ms"]["median"] / 1000 for lv in timed], "o-", label="median")
    right.plot(tx, [lv["latency_ms"]["p95"] / 1000 for lv in timed], "^--", label="p95")
    right.set_xlabel("devices provisioning at once")
    right.set_ylabel("seconds per provisioning")
    right.set_ylim(bottom=0)
    right.legend()
    right.set_title("Latency per provisioning")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(c) for c in x])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _svg(fig)
