"""Pure. Plots for the HTML report, rendered by matplotlib to inline SVG strings."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

__all__ = ["latency_plot", "overhead_plot"]


def _figure(height: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; SVG text only
    import matplotlib.pyplot as plt

    plt.rcParams["svg.fonttype"] = "none"  # text stays text: searchable, small
    return plt.subplots(figsize=(8.0, height))


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
