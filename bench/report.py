"""Pure. Render a benchmark report (schema in :mod:`bench.schema`) as Markdown, HTML and JSON."""

from __future__ import annotations

import html
import json
from typing import Any

from .plots import latency_plot, overhead_plot, throughput_plot
from .summary import COLUMNS, RATIO_NOTES, goal_ratios, summary_rows, time_splits

__all__ = [
    "format_ns",
    "matrix_markdown",
    "matrix_rows",
    "render_html",
    "render_json",
    "render_markdown",
    "render_throughput_html",
    "render_throughput_markdown",
    "summary_html",
    "summary_markdown",
    "throughput_rows",
    "verdict_word",
]


def format_ns(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.2f} µs"
    return f"{value:.0f} ns"


def verdict_word(data: dict[str, Any]) -> str:
    """PASS, FAIL, or INTERRUPTED for a run cut short (a partial report judges nothing)."""
    if data["method"].get("interrupted"):
        return "INTERRUPTED (partial report)"
    return "PASS" if data["ok"] else "FAIL"


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"


def _operations(data: dict[str, Any]) -> list[str]:
    seen: dict[str, None] = {}
    for r in data["records"]:
        if not r["raw"]:
            seen.setdefault(r["operation"], None)
    return list(seen)


def _row(r: dict[str, Any]) -> list[str]:
    s = r["summary"] or {}
    ci = r["ci95_median"]
    overhead = r["overhead_vs_raw"]
    return [
        r["tre"],
        r["operation"],
        format_ns(s.get("median")),
        f"{format_ns(ci[0])} – {format_ns(ci[1])}" if ci else "–",
        format_ns(s.get("p95")),
        format_ns(s.get("p99")),
        f"{format_ns(s.get('min'))} / {format_ns(s.get('max'))}",
        str(s.get("n", 0)),
        f"{overhead:.2f}×" if overhead is not None else ("reference" if r["raw"] else "–"),
    ]


_HEADERS = ["TRE", "operation", "median", "95% CI of median", "p95", "p99", "min / max", "n",
            "× raw"]  # fmt: skip


def _details(data: dict[str, Any]) -> list[list[str]]:
    """What each case times (its ``detail``), for the rows that say."""
    return [[r["tre"], r["operation"], r["detail"]] for r in data["records"] if r.get("detail")]


def _notes(data: dict[str, Any]) -> list[str]:
    notes = [f"{s['tre']}: not run — {s['reason']}" for s in data["skipped"]]
    for r in data["records"]:
        for error in r["errors"][:3]:
            notes.append(f"{r['tre']} / {r['operation']}: {error}")
    return notes


def _summary_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    headers = ["TRE", *(title for title, _ in COLUMNS), "AKA × raw"]
    rows = []
    for row in summary_rows(data):
        if row.not_run is not None:
            rows.append([row.tre, f"not run: {row.not_run}", *[""] * len(COLUMNS)])
            continue
        ratio_text = f"{row.aka_vs_raw:.2f}×" if row.aka_vs_raw is not None else "–"
        rows.append([row.tre, *(format_ns(row.medians.get(op)) for _, op in COLUMNS), ratio_text])
    return headers, rows


def _split_lines(data: dict[str, Any]) -> list[str]:
    lines = []
    for split in time_splits(data):
        parts = "; ".join(
            f"{name} {format_ns(ns)} ({100 * ns / split.total:.0f} %)" for name, ns in split.parts
        )
        lines.append(f"- **{split.tre}** — AKA median {format_ns(split.total)}: {parts}")
    return lines


_SPLIT_HEADING = "Where an AKA's time goes (median of each part, measured per round)"
_SPLIT_NOTE = (
    "Each round of aka-milenage is split where its time is spent: TPM commands inside the "
    "transport, fsync + rename of state writes, APDU exchanges at the card link (on the "
    "emulated card this includes the card's own work), and the host's own code and crypto "
    "(the rest of the round). One round's parts sum to that round; the bar shows each part's "
    "median, the figure after it the AKA's median."
)


_GOALS_HEADING = "TPM client stack: same-run ratios against their goals"
_GOALS_NOTE = (
    "Each ratio divides medians of one TPM row's cases in this run (the real path's host "
    "ratio: the median over rounds of that round's host time ÷ its TPM commands + fsync), "
    "so the machine's speed cancels out; the goal is the largest ratio accepted."
)


def _goal_rows(data: dict[str, Any]) -> list[list[str]]:
    return [
        [g.tre, g.what, f"{g.value:.2f}×", f"≤ {g.goal:g}×", "met" if g.met else "NOT met"]
        for g in goal_ratios(data)
    ]


_GOAL_HEADERS = ["TRE", "ratio", "value", "goal", ""]


def summary_markdown(data: dict[str, Any]) -> list[str]:
    """The one-screen summary that opens the report."""
    headers, rows = _summary_table(data)
    lines = ["## Summary: AKA per TRE", "", "| " + " | ".join(headers) + " |"]
    lines.append("|" + "---|" * len(headers))
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    split = _split_lines(data)
    if split:
        lines += ["", f"### {_SPLIT_HEADING}", "", _SPLIT_NOTE, "", *split]
    goals = _goal_rows(data)
    if goals:
        lines += ["", f"### {_GOALS_HEADING}", "", _GOALS_NOTE, ""]
        lines += ["| " + " | ".join(_GOAL_HEADERS) + " |", "|" + "---|" * len(_GOAL_HEADERS)]
        lines += ["| " + " | ".join(cells) + " |" for cells in goals]
    lines += ["", "### Reading the ratios", "", *(f"- {note}" for note in RATIO_NOTES), ""]
    return lines


_SPLIT_COLOURS = ("#4a7ebb", "#e0a030", "#6aa84f", "#b04a4a")


def _split_svg(data: dict[str, Any]) -> str:
    """Stacked horizontal bars, one per TRE, scaled to the longest bar."""
    splits = time_splits(data)
    if not splits:
        return ""
    width, bar, label = 900, 22, 230
    longest = max(max(s.total, sum(ns for _, ns in s.parts)) for s in splits) or 1.0
    names = [name for name, _ in splits[0].parts]
    for split in splits:
        names += [name for name, _ in split.parts if name not in names]
    height = len(splits) * (bar + 10) + 40
    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           "font-family='sans-serif' font-size='12'>"]  # fmt: skip
    for i, split in enumerate(splits):
        y = 10 + i * (bar + 10)
        out.append(f"<text x='0' y='{y + 15}'>{html.escape(split.tre)}</text>")
        x = float(label)
        for name, ns in split.parts:
            w = (width - label - 90) * ns / longest
            colour = _SPLIT_COLOURS[names.index(name) % len(_SPLIT_COLOURS)]
            out.append(
                f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{bar}' fill='{colour}'>"
                f"<title>{html.escape(name)}: {format_ns(ns)}</title></rect>"
            )
            x += w
        out.append(f"<text x='{x + 4:.1f}' y='{y + 15}'>{format_ns(split.total)}</text>")
    y = 10 + len(splits) * (bar + 10) + 10
    x = 0.0
    for j, name in enumerate(names):
        colour = _SPLIT_COLOURS[j % len(_SPLIT_COLOURS)]
        out.append(f"<rect x='{x}' y='{y}' width='12' height='12' fill='{colour}'/>")
        out.append(f"<text x='{x + 16}' y='{y + 11}'>{html.escape(name)}</text>")
        x += 16 + 7 * len(name) + 20
    out.append("</svg>")
    return "".join(out)


def summary_html(data: dict[str, Any]) -> list[str]:
    headers, rows = _summary_table(data)
    parts = ["<h2>Summary: AKA per TRE</h2>", _table(headers, rows)]
    svg = _split_svg(data)
    if svg:
        parts += [
            f"<h3>{html.escape(_SPLIT_HEADING)}</h3>",
            f"<p>{html.escape(_SPLIT_NOTE)}</p>",
            f"<figure>{svg}</figure>",
            "<ul>"
            + "".join(f"<li>{html.escape(x[2:])}</li>" for x in _split_lines(data))
            + "</ul>",
        ]
    goals = _goal_rows(data)
    if goals:
        parts += [
            f"<h3>{html.escape(_GOALS_HEADING)}</h3>",
            f"<p>{html.escape(_GOALS_NOTE)}</p>",
            _table(_GOAL_HEADERS, goals),
        ]
    parts += ["<h3>Reading the ratios</h3>", "<ul>"]
    parts += [f"<li>{html.escape(note)}</li>" for note in RATIO_NOTES]
    parts.append("</ul>")
    return parts


def render_markdown(data: dict[str, Any]) -> str:
    env, conf, method = data["environment"], data["conformance"], data["method"]
    lines = [
        "# trelab benchmark report",
        "",
        f"Generated {data['generated']} by trelab {env['trelab']} on {env['cpu']} "
        f"({env['cores']} cores), Python {env['python']}, {env['openssl']}.",
        "",
        f"**Verdict: {verdict_word(data)}** — {data['verdict']}",
        "",
        f"Method: {method['rounds']} interleaved rounds (random order per round, seed "
        f"{method['seed']}){', quick run' if method['quick'] else ''}; each sample is the time "
        "of `batch` operations divided by `batch`; median with a 95 % bootstrap interval; "
        "overhead = median / median of the same TRE's raw transport in the same run.",
        "",
        *summary_markdown(data),
        "## Results (every case)",
        "",
        "| " + " | ".join(_HEADERS) + " |",
        "|" + "---|" * len(_HEADERS),
    ]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in data["records"]]
    details = _details(data)
    if details:
        lines += ["", "## What each case times", ""]
        lines += [f"- **{tre}** / {operation}: {detail}" for tre, operation, detail in details]
    lines += ["", "## TREs", ""]
    for tre, info in data["tres"].items():
        detail = ", ".join(f"{k}: {v}" for k, v in info.items())
        lines.append(f"- **{tre}** — {detail}")
    notes = _notes(data)
    if notes:
        lines += ["", "## Not run / errors", ""] + [f"- {n}" for n in notes]
    lab = data.get("lab")
    if lab:
        lines += [
            "",
            "## Lab",
            "",
            f"- swtpm {lab['swtpm']['state']} (TCTI `{lab['tcti']}`); EK certificate chain "
            f"{'verified' if lab['ek_chain_verified'] else 'NOT verified'} against "
            f"`{lab['ca_bundle']}`",
            f"- pcscd {lab['pcscd']['state']}; readers: {', '.join(lab['readers']) or 'none'}",
        ]
    throughput = data.get("provisioning_throughput")
    if throughput:
        lines += ["", *throughput_markdown(throughput), *server_side_markdown(throughput)]
    lines += [
        "",
        "## AKA conformance (3GPP test data)",
        "",
        f"{conf['passed']} of {conf['total']} set runs passed "
        f"({conf['outputs_checked']} outputs compared).",
        "",
    ]
    failed = [r for r in conf["results"] if not r["passed"]]
    lines += [f"- FAIL {r['algorithm']}/{r['implementation']} {r['set']}: "
              f"{', '.join(r['mismatches'])}" for r in failed]  # fmt: skip
    return "\n".join(lines) + "\n"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left}
th{background:#f3f3f3}.pass{color:#070}.fail{color:#b00}
figure{margin:1.5em 0}svg{max-width:100%;height:auto}
"""


_THROUGHPUT_HEADERS = ["devices at once", "provisionings ok", "wall", "provisionings/s",
                       "latency median", "latency p95", "TPM time median",
                       "CPU s server / agents / swtpm", "cores busy", "host CPU s",
                       "server CPU per provisioning"]  # fmt: skip


def _seconds(ms: float | None) -> str:
    return "–" if ms is None else f"{ms / 1000:.2f} s"


def throughput_rows(section: dict[str, Any]) -> list[list[str]]:
    """One table row per concurrency level of a ``provisioning_throughput`` section."""
    rows = []
    for lv in section["levels"]:
        latency, cpu = lv["latency_ms"] or {}, lv["cpu_s"]
        rate, busy = lv["throughput_per_s"], lv["cores_busy"]
        server_ms = lv["server_cpu_ms_per_provisioning"]
        rows.append(
            [
                str(lv["concurrency"]),
                f"{lv['succeeded']}/{lv['attempted']}",
                f"{lv['wall_s']:.2f} s",
                "–" if rate is None else f"{rate:.2f}",
                _seconds(latency.get("median")),
                _seconds(latency.get("p95")),
                _seconds(lv["tpm_ms_median"]),
                f"{cpu['server']:.2f} / {cpu['agents']:.2f} / {cpu['swtpm']:.2f}",
                "–" if busy is None else f"{busy:.2f}",
                f"{cpu['host']:.2f}" if "host" in cpu else "–",
                "–" if server_ms is None else f"{server_ms:.0f} ms",
            ]
        )
    return rows


def _combination(run: dict[str, Any]) -> str:
    workers = run["workers"]
    engine = {"sqlite": "SQLite", "postgres": "PostgreSQL"}.get(run["store"], run["store"])
    return f"{engine}, {'built-in server' if workers is None else f'{workers} worker(s)'}"


def matrix_rows(section: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The engines × worker counts side by side: (headers, one row per concurrency level with
    provisionings/s, median latency and cores busy for each combination); none without
    ``matrix``."""
    runs = section.get("matrix") or []
    if not runs:
        return [], []
    headers = ["devices at once", *(_combination(run) for run in runs)]
    levels = sorted({lv["concurrency"] for run in runs for lv in run["levels"]})
    rows = []
    for concurrency in levels:
        row = [str(concurrency)]
        for run in runs:
            found = [lv for lv in run["levels"] if lv["concurrency"] == concurrency]
            if not found:
                row.append("–")
                continue
            lv = found[0]
            rate, busy = lv["throughput_per_s"], lv["cores_busy"]
            median = (lv["latency_ms"] or {}).get("median")
            row.append(
                f"{'–' if rate is None else f'{rate:.2f}'} /s, p50 {_seconds(median)}, "
                f"{'–' if busy is None else f'{busy:.2f}'} cores"
                + ("" if lv["failed"] == 0 else f", {lv['failed']} FAILED")
            )
        rows.append(row)
    return headers, rows


def matrix_markdown(section: dict[str, Any]) -> list[str]:
    """The side-by-side table as Markdown lines (none without ``matrix``)."""
    headers, rows = matrix_rows(section)
    if not headers:
        return []
    lines = [
        "",
        "## Engines × workers, side by side",
        "",
        "Each column its own `trelab network serve` (gunicorn with that many worker processes) "
        "and store (a SQLite file; a PostgreSQL cluster of the run's own), fresh swtpms, the "
        "same levels, run one after the other on the same machine. Cell: provisionings/s, "
        "median latency, cores busy (server + agents + swtpms + PostgreSQL CPU / wall).",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += [""] + [f"- {_combination(run)}: {run['verdict']}" for run in section["matrix"]]
    return lines


def _throughput_intro(section: dict[str, Any]) -> tuple[str, str]:
    env, method = section["environment"], section["method"]
    server = section["server"]
    states = ", ".join(f"{n} {s}" for s, n in server["mids_by_state"].items()) or "no MIDs"
    about = (
        f"One `trelab network serve` ({method.get('server', 'one process')}); at each level "
        f"that many fresh swtpm "
        f"devices, "
        f"each with its own agent process provisioning {method['per_device']} MID(s) back "
        f"to back, all starting together. Machine: {env.get('cores')} cores ({env.get('cpu', '?')})"
        f", {env['swtpm']}. Wall time: first provisioning's start to last one's end; latency "
        f"per successful provisioning; cores busy = CPU time of server + agents + swtpms (+ PostgreSQL) / wall; "
        f"host CPU = every process on the machine in the same window (more than ours: other "
        f"load). Load average before: {env.get('loadavg_before', '?')}. "
        f"Server store afterwards: {states}."
    )
    server_ms = [
        lv["server_cpu_ms_per_provisioning"]
        for lv in section["levels"]
        if lv["server_cpu_ms_per_provisioning"]
    ]
    if server_ms:
        per = sorted(server_ms)[len(server_ms) // 2]
        about += (
            f" Agents and swtpms run on the same {env.get('cores')} cores as the server, so the "
            f"curve is bounded by the whole host's CPU, not the server's: the server itself "
            f"spent about {per:.0f} ms CPU per provisioning, i.e. roughly {1000 / per:.0f} "
            f"provisionings/s if it had one core to itself (an estimate: one Python process, "
            f"GIL-bound; SQLite fsync waits not included)."
        )
    return f"{'PASS' if section['ok'] else 'FAIL'} — {section['verdict']}", about


def _throughput_notes(section: dict[str, Any]) -> list[str]:
    return [f"c={lv['concurrency']}: {e}" for lv in section["levels"] for e in lv["errors"][:3]]


def throughput_markdown(section: dict[str, Any], heading: str = "##") -> list[str]:
    """The section as Markdown lines: verdict, method, table, errors."""
    verdict, about = _throughput_intro(section)
    lines = [f"{heading} Provisioning throughput (one server, concurrent devices)", "",
             f"**{verdict}**", "", about, "",
             "| " + " | ".join(_THROUGHPUT_HEADERS) + " |",
             "|" + "---|" * len(_THROUGHPUT_HEADERS)]  # fmt: skip
    lines += ["| " + " | ".join(row) + " |" for row in throughput_rows(section)]
    notes = _throughput_notes(section)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return lines + matrix_markdown(section)


def throughput_html(section: dict[str, Any]) -> list[str]:
    """The section as HTML parts: verdict, method, table, plot, errors."""
    verdict, about = _throughput_intro(section)
    css = "pass" if section["ok"] else "fail"
    parts = [
        "<h2>Provisioning throughput (one server, concurrent devices)</h2>",
        f"<p class='{css}'><strong>{html.escape(verdict)}</strong></p>",
        f"<p>{html.escape(about)}</p>",
        _table(_THROUGHPUT_HEADERS, throughput_rows(section)),
    ]
    svg = throughput_plot(section)
    if svg:
        parts.append(f"<figure>{svg}</figure>")
    notes = _throughput_notes(section)
    if notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    headers, rows = matrix_rows(section)
    if headers:
        parts += ["<h2>Engines × workers, side by side</h2>", _table(headers, rows)]
        parts.append(
            "<ul>"
            + "".join(
                f"<li>{html.escape(_combination(run))}: {html.escape(run['verdict'])}</li>"
                for run in section["matrix"]
            )
            + "</ul>"
        )
    return parts


def server_side_markdown(section: dict[str, Any]) -> list[str]:
    """The ``--server-alone`` passes as Markdown lines (none when they did not run)."""
    lines: list[str] = []
    cpu = section.get("server_cpu")
    if cpu:
        lines += [
            "",
            "## Server CPU per provisioning against its cryptography",
            "",
            f"{cpu['server_cpu_ms']} ms of server CPU per provisioning (in process, median of "
            f"{cpu['provisionings']} provisionings); its cryptographic calls timed alone: "
            f"{cpu['crypto_alone_ms']} ms — {cpu['ratio_to_crypto_alone']}× "
            f"(inside the profile: {cpu['crypto_in_profile_ms']} ms).",
            "",
            "| call | per provisioning | alone, µs each | ms per provisioning |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {row['call']} | {row['per_provisioning']} | "
            f"{'–' if row['alone_us_each'] is None else row['alone_us_each']} | "
            f"{row['ms_per_provisioning']} |"
            for row in cpu["calls"]
        ]
        lines += ["", "Where the rest goes (profile, thread CPU ms per provisioning):", ""]
        lines += [
            f"- {row['function']}: {row['ms_per_provisioning']}" for row in cpu["top_other_ms"]
        ]
    alone = section.get("server_alone")
    if alone:
        lines += [
            "",
            "## The server alone",
            "",
            f"Load: {alone['load']}."
            + (
                f" Store: {'PostgreSQL' if alone['store'] == 'postgres' else 'SQLite'}."
                if alone.get("store")
                else ""
            ),
            "",
            "| workers | clients | ok | /s | server CPU ms/request | server cores | "
            "database CPU ms/request | host cores busy |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {lv['workers']} | {lv['clients']} | {lv['succeeded']}/{lv['requests']} | "
            f"{lv['per_s']} | {lv['server_cpu_ms_per_request']} | {lv['server_cores_busy']} | "
            f"{lv['database_cpu_ms_per_request']} | {lv['host_cores_busy']} |"
            for lv in alone["levels"]
        ]
    return lines


def render_throughput_markdown(section: dict[str, Any]) -> str:
    """``trelab bench throughput``'s own Markdown file."""
    lines = throughput_markdown(section, heading="#") + server_side_markdown(section)
    return "\n".join(lines) + "\n"


def render_throughput_html(section: dict[str, Any]) -> str:
    """``trelab bench throughput``'s own self-contained HTML page."""
    head = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>trelab provisioning throughput</title>",
        f"<style>{_CSS}</style></head><body>",
    ]
    method = ["<h2>Method</h2><pre>", html.escape(json.dumps(section["method"], indent=1))]
    server_side = server_side_markdown(section)
    extra = ["<pre>", html.escape("\n".join(server_side)), "</pre>"] if server_side else []
    return "\n".join([*head, *throughput_html(section), *extra, *method, "</pre></body></html>"])


def render_html(data: dict[str, Any]) -> str:
    """One self-contained HTML file: tables and inline SVG plots, no external resources."""
    env, conf = data["environment"], data["conformance"]
    verdict_class = "pass" if data["ok"] else "fail"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>trelab benchmark report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>trelab benchmark report</h1>",
        f"<p>Generated {html.escape(data['generated'])} by trelab "
        f"{html.escape(str(env['trelab']))} on {html.escape(str(env['cpu']))} "
        f"({env['cores']} cores), Python {html.escape(str(env['python']))}, "
        f"{html.escape(str(env['openssl']))}.</p>",
        f"<p class='{verdict_class}'><strong>Verdict: "
        f"{html.escape(verdict_word(data))}</strong> — {html.escape(data['verdict'])}</p>",
        *summary_html(data),
        "<h2>Results (every case)</h2>",
        _table(_HEADERS, [_row(r) for r in data["records"]]),
    ]
    svg = overhead_plot(data["records"])
    if svg:
        parts.append(f"<figure>{svg}</figure>")
    parts.append("<h2>Latency distributions</h2>")
    for operation in _operations(data):
        svg = latency_plot(data["records"], operation)
        if svg:
            parts.append(f"<figure>{svg}</figure>")
    details = _details(data)
    if details:
        parts.append("<h2>What each case times</h2>")
        parts.append(_table(["TRE", "operation", "what is timed"], details))
    parts.append("<h2>TREs</h2>")
    parts.append(
        _table(
            ["TRE", "what it is"],
            [
                [tre, "; ".join(f"{k}: {v}" for k, v in info.items())]
                for tre, info in data["tres"].items()
            ],
        )
    )
    throughput = data.get("provisioning_throughput")
    if throughput:
        parts += throughput_html(throughput)
        server_side = server_side_markdown(throughput)
        if server_side:
            parts += ["<pre>", html.escape("\n".join(server_side)), "</pre>"]
    notes = _notes(data)
    if notes:
        parts.append("<h2>Not run / errors</h2><ul>")
        parts += [f"<li>{html.escape(n)}</li>" for n in notes]
        parts.append("</ul>")
    parts.append("<h2>AKA conformance</h2>")
    parts.append(
        f"<p>{conf['passed']} of {conf['total']} set runs passed "
        f"({conf['outputs_checked']} outputs compared).</p>"
    )
    parts.append(
        _table(
            ["algorithm", "implementation", "set", "outputs", "result"],
            [
                [
                    r["algorithm"],
                    r["implementation"],
                    r["set"],
                    str(r["checked"]),
                    "pass" if r["passed"] else "FAIL: " + ", ".join(r["mismatches"]),
                ]
                for r in conf["results"]
            ],
        )
    )
    parts.append("<h2>Method</h2><pre>")
    parts.append(html.escape(json.dumps(data["method"], indent=1)))
    parts.append("</pre></body></html>")
    return "\n".join(parts)
