"""Pure. The threat-check report: one JSON document (schema ``trelab.threats``, version 1) built
from a run, and renderings of it — the terminal matrix (threat × counter-measure × result) and a
self-contained HTML page (no external resources, like the benchmark report).

Document::

    {"schema": "trelab.threats", "schema_version": 1, "generated", "ok", "verdict",
     "counts": {outcome: n}, "seconds", "lab": {...},
     "threats": [{"id", "section", "title", "likelihood", "impact", "impact_note", "risk",
                  "risk_category", "summary_risk", "seconds", "counts": {outcome: n},
                  "measures": [{"number", "summary", "kind", "ffs",
                                "findings": [finding, ...]}]}],
     "extras": [{"tag", "what", "findings": [finding, ...]}],
     "failed": [finding, ...]}

A finding is :meth:`threats.result.Finding.to_json`. A finding that exercises several
counter-measures appears under each of them.
"""

from __future__ import annotations

import html
import json
import textwrap
from collections import Counter
from typing import Any

from threats.catalogue import threat
from threats.result import EXTRA_ATTACKS, OUTCOMES, Finding

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "build_document",
    "render_html",
    "render_json",
    "render_text",
]

SCHEMA_NAME = "trelab.threats"
SCHEMA_VERSION = 1

_LABEL = {
    "blocked": "BLOCKED",
    "not-blocked": "NOT BLOCKED",
    "not-run": "not run",
    "organisational": "organisational",
    "ffs": "FFS",
    "error": "ERROR",
}


def _label(finding: dict[str, Any]) -> str:
    if finding["outcome"] == "not-blocked" and not finding["should_block"]:
        return "not blocked (accepted)"
    return _LABEL[finding["outcome"]]


def build_document(
    findings: list[Finding],
    *,
    threat_ids: list[str],
    seconds: dict[str, float],
    generated: str,
    total_seconds: float,
    lab: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON document of one run (see the module docstring)."""
    counts = Counter(f.outcome for f in findings)
    failed = [f for f in findings if f.failed]
    threats = []
    for threat_id in threat_ids:
        entry = threat(threat_id)
        mine = [f for f in findings if f.threat == threat_id]
        measures = []
        for m in entry.measures:
            measures.append(
                {
                    "number": m.number,
                    "summary": m.summary,
                    "kind": m.kind,
                    "ffs": m.ffs,
                    "findings": [f.to_json() for f in mine if m.number in f.measures],
                }
            )
        threats.append(
            {
                "id": entry.id,
                "section": entry.section,
                "title": entry.title,
                "likelihood": entry.likelihood,
                "impact": entry.impact,
                "impact_note": entry.impact_note,
                "risk": list(entry.risk),
                "risk_text": entry.risk_text,
                "risk_category": entry.risk_category,
                "summary_risk": entry.summary_risk,
                "seconds": round(seconds.get(threat_id, 0.0), 3),
                "counts": dict(Counter(f.outcome for f in mine)),
                "measures": measures,
            }
        )
    extras = [
        {
            "tag": tag,
            "what": what,
            "findings": [f.to_json() for f in findings if f.extra == tag],
        }
        for tag, what in EXTRA_ATTACKS.items()
    ]
    blocked = counts.get("blocked", 0)
    verdict = (
        f"{len(threat_ids)} threats, {len(findings)} findings: {blocked} blocked, "
        + ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if o != "blocked" and counts.get(o))
    )
    verdict += (
        "; every threat of TR 33.812 §7.1.2 blocked or honestly classified"
        if not failed
        else f"; {len(failed)} finding(s) the lab should have blocked did not hold"
    )
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "generated": generated,
        "ok": not failed,
        "verdict": verdict,
        "counts": {o: counts.get(o, 0) for o in OUTCOMES},
        "seconds": round(total_seconds, 3),
        "lab": lab or {},
        "threats": threats,
        "extras": extras,
        "failed": [f.to_json() for f in failed],
    }


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=1, sort_keys=False) + "\n"


# ---- terminal ---------------------------------------------------------------------------------


def render_text(doc: dict[str, Any], *, width: int = 110) -> str:
    """The matrix for a terminal: per threat, each counter-measure with what was tried and how
    it ended; then the extra attacks and the verdict."""
    lines: list[str] = []
    wrap = textwrap.TextWrapper(width=width, initial_indent=" " * 8, subsequent_indent=" " * 8)
    for t in doc["threats"]:
        note = f" ({t['impact_note']})" if t["impact_note"] else ""
        summary = (
            f"; summary table: {t['summary_risk']}"
            if t["summary_risk"] != t["risk_category"]
            else ""
        )
        lines.append(
            f"Threat {t['id']} (§{t['section']}): {t['title']}\n"
            f"  likelihood {t['likelihood']} × impact {t['impact']}{note} → risk {t['risk_text']}"
            f"{summary}  [{t['seconds']:.1f} s]"
        )
        for m in t["measures"]:
            head = f"  CM {m['number']:>2}  {m['summary']}"
            if m["kind"] != "technical":
                head += f"  [{m['kind']}]"
            lines.append(head[:width])
            if not m["findings"]:
                lines.append("        —")
            for f in m["findings"]:
                extra = f" (extra: {f['extra']})" if f["extra"] else ""
                tre = f" [{f['tre']}]" if f["tre"] else ""
                lines.append(f"      {_label(f):<24} {f['attack']}{tre}{extra}")
                lines += wrap.wrap(f"tried: {f['attempted']}")
                lines += wrap.wrap(
                    f"{'result' if f['outcome'] != 'blocked' else 'stopped by'}: {f['result']}"
                )
        lines.append("")
    lines.append("Extra attacks:")
    for x in doc["extras"]:
        outcomes = ", ".join(f"{_label(f)} ({f['threat']}/{f['attack']})" for f in x["findings"])
        lines.append(f"  {x['tag']:<24} {outcomes or 'no finding'}")
    lines.append("")
    counts = ", ".join(f"{n} {o}" for o, n in doc["counts"].items() if n)
    lines.append(f"{'PASS' if doc['ok'] else 'FAIL'}: {doc['verdict']}")
    lines.append(f"({counts}; {doc['seconds']:.1f} s)")
    for f in doc["failed"]:
        lines.append(
            f"  should have been blocked: threat {f['threat']} {f['attack']}: {f['result']}"
        )
    return "\n".join(lines)


# ---- HTML -------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.88em;width:100%}
td,th{border:1px solid #ccc;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}h2{margin-top:1.8em}.meta{color:#555}
.blocked{background:#e6f4e6}.not-blocked{background:#fbe3e3}.accepted{background:#fdf3dc}
.not-run{background:#eeeeee}.organisational,.ffs{background:#e8eefb}.error{background:#f8c8c8}
.pass{color:#070}.fail{color:#b00}small{color:#555}
"""


def _class(finding: dict[str, Any]) -> str:
    if finding["outcome"] == "not-blocked" and not finding["should_block"]:
        return "accepted"
    return str(finding["outcome"])


def _finding_cells(f: dict[str, Any]) -> str:
    e = html.escape
    evidence = "; ".join(f"{k}: {v}" for k, v in f["evidence"].items())
    extra = f"<br><small>extra attack: {e(f['extra'])}</small>" if f["extra"] else ""
    return (
        f"<td>{e(f['attack'])}<br><small>{e(f['tre'])}</small>{extra}</td>"
        f"<td class='{_class(f)}'>{e(_label(f))}</td>"
        f"<td>{e(f['attempted'])}</td>"
        f"<td>{e(f['result'])}"
        + (f"<br><small>{e(evidence)}</small>" if evidence else "")
        + f"</td><td>{f['seconds']:.2f}</td>"
    )


def render_html(doc: dict[str, Any]) -> str:
    """One self-contained page: the summary, one matrix per threat, the extra attacks."""
    e = html.escape
    verdict_class = "pass" if doc["ok"] else "fail"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>trelab threat checks</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>trelab threat checks — TR 33.812 §7.1.2</h1>",
        f"<p class='meta'>Generated {e(doc['generated'])}; {doc['seconds']:.1f} s."
        + (
            f" Lab: {e(str(doc['lab'].get('dir', '')))}, TPM {e(str(doc['lab'].get('tcti', '')))}"
            if doc["lab"]
            else ""
        )
        + "</p>",
        f"<p class='{verdict_class}'><strong>{'PASS' if doc['ok'] else 'FAIL'}</strong> — "
        f"{e(doc['verdict'])}</p>",
        "<h2>Summary</h2><table><thead><tr><th>threat</th><th>title</th><th>L × I = risk</th>"
        + "".join(f"<th>{e(_LABEL[o])}</th>" for o in OUTCOMES)
        + "</tr></thead><tbody>",
    ]
    for t in doc["threats"]:
        parts.append(
            f"<tr><td><a href='#t{e(t['id'])}'>{e(t['id'])}</a></td><td>{e(t['title'])}</td>"
            f"<td>{t['likelihood']} × {t['impact']} = {e(t['risk_text'])}</td>"
            + "".join(f"<td>{t['counts'].get(o, '')}</td>" for o in OUTCOMES)
            + "</tr>"
        )
    parts.append("</tbody></table>")
    head = (
        "<tr><th>CM</th><th>counter-measure (TR 33.812)</th><th>attack</th><th>result</th>"
        "<th>attempted</th><th>what stopped it / why not</th><th>s</th></tr>"
    )
    for t in doc["threats"]:
        note = f" ({e(t['impact_note'])})" if t["impact_note"] else ""
        parts.append(
            f"<h2 id='t{e(t['id'])}'>Threat {e(t['id'])}: {e(t['title'])}</h2>"
            f"<p class='meta'>§{e(t['section'])}; likelihood {t['likelihood']}, impact"
            f" {t['impact']}{note}, risk {e(t['risk_text'])}"
            + (
                f"; TR 33.812's summary table says {e(t['summary_risk'])}"
                if t["summary_risk"] != t["risk_category"]
                else ""
            )
            + "</p>"
        )
        parts.append(f"<table><thead>{head}</thead><tbody>")
        for m in t["measures"]:
            summary = e(m["summary"])
            if m["kind"] != "technical":
                summary += f"<br><small>{e(m['kind'])}</small>"
            if m["ffs"]:
                summary += f"<br><small>FFS: {e(m['ffs'])}</small>"
            rows = m["findings"] or [None]
            for i, f in enumerate(rows):
                first = (
                    f"<td rowspan='{len(rows)}'>{e(m['number'])}</td>"
                    f"<td rowspan='{len(rows)}'>{summary}</td>"
                    if i == 0
                    else ""
                )
                cells = _finding_cells(f) if f else "<td colspan='5'>—</td>"
                parts.append(f"<tr>{first}{cells}</tr>")
        parts.append("</tbody></table>")
    parts.append(
        "<h2>Extra attacks</h2><table><thead><tr><th>attack</th><th>threat</th>"
        "<th>finding</th><th>result</th><th>attempted</th><th>what stopped it</th>"
        "<th>s</th></tr></thead><tbody>"
    )
    for x in doc["extras"]:
        rows = x["findings"] or [None]
        for i, f in enumerate(rows):
            first = f"<td rowspan='{len(rows)}'>{e(x['what'])}</td>" if i == 0 else ""
            if f is None:
                parts.append(f"<tr>{first}<td colspan='6'>no finding</td></tr>")
            else:
                parts.append(f"<tr>{first}<td>{e(f['threat'])}</td>{_finding_cells(f)}</tr>")
    parts.append("</tbody></table>")
    parts.append(
        "<p class='meta'>Outcomes: BLOCKED — the attack was made and a named counter-measure"
        " stopped it; NOT BLOCKED — it worked (accepted: TR 33.812 accepts the residual risk);"
        " not run — a part is missing; organisational / FFS — TR 33.812's counter-measure is a"
        " contract, audit or procedure, or for further study (what could be tested was)."
        "</p></body></html>"
    )
    return "\n".join(parts)
