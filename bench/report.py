"""Pure. Render the main job's results as Markdown (people) and JSON (machines)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REPORT_VERSION", "render_json", "render_markdown"]

REPORT_VERSION = 1


def _ns(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.2f} ms"
    if value >= 1e3:
        return f"{value / 1e3:.2f} µs"
    return f"{value:.0f} ns"


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


def render_markdown(data: dict[str, Any]) -> str:
    """A short report: environment, lab, conformance, AKA benchmark, verdict."""
    env, lab, conf = data["environment"], data["lab"], data["conformance"]
    lines = [
        "# trelab report",
        "",
        f"Generated {data['generated']} by trelab {env['trelab']} on {env['cpu']} "
        f"({env['cores']} cores), Python {env['python']}, {env['openssl']}.",
        "",
        f"**Verdict: {'PASS' if data['ok'] else 'FAIL'}** — {data['verdict']}",
        "",
        "## Lab",
        "",
        "| component | state | detail |",
        "|---|---|---|",
        f"| swtpm | {lab['swtpm']['state']} | pid {lab['swtpm']['pid']}, TCTI `{lab['tcti']}` |",
        f"| EK certificate chain | {'verified' if lab['ek_chain_verified'] else 'NOT verified'} "
        f"| manufacturer CA bundle `{lab['ca_bundle']}` |",
        f"| pcscd + vpcd | {lab['pcscd']['state']} | readers: "
        f"{', '.join(lab['readers']) or 'none'} |",
        "",
        "## AKA conformance (3GPP test data)",
        "",
        f"{conf['passed']} of {conf['total']} set runs passed "
        f"({conf['outputs_checked']} outputs compared).",
        "",
        "| algorithm | implementation | set | outputs | result |",
        "|---|---|---|---|---|",
    ]
    for r in conf["results"]:
        verdict = "pass" if r["passed"] else "FAIL: " + ", ".join(r["mismatches"])
        lines.append(
            f"| {r['algorithm']} | {r['implementation']} | {r['set']} | {r['checked']} "
            f"| {verdict} |"
        )
    lines += [
        "",
        "## Software AKA benchmark",
        "",
        "Medians of chunked samples; ratios against one raw AES-128 call (the raw transport "
        "of a software keyholder) measured in the same run.",
        "",
        "| kernel | raw AES call | device AKA (MAC check) | × raw | full USIM recipe | × raw "
        "| vectors/s (batch) | vectors/s (batch 1) | subscribers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for b in data["aka_bench"]:
        lines.append(
            f"| {b['kernel']} | {_ns(b['raw_aes_ns_median'])} | {_ns(b['aka_ns_median'])} "
            f"| {b['aka_vs_raw_aes']:.1f} | {_ns(b['usim_ns_median'])} "
            f"| {b['usim_vs_raw_aes']:.1f} | {b['av_per_s']:,.0f} ({b['batch']}) "
            f"| {b['av_per_s_batch1']:,.0f} | {b['subscribers']:,} |"
        )
    tuak = data.get("tuak_bench")
    if tuak:
        lines += [
            "",
            f"TUAK on the software keyholder (Keccak-f[1600] through hashlib's SHAKE256, "
            f"since TUAK's IN is one SHAKE256 block): one keyed permutation "
            f"{_ns(tuak['keccak_ns_median'])}; device AKA (MAC check) "
            f"{_ns(tuak['aka_ns_median'])} = {tuak['aka_vs_keccak']:.1f}× one permutation. "
            f"The pure-Python permutation (for states that are not SHAKE-padded) takes "
            f"{_ns(tuak['python_keccak_ns_median'])}.",
        ]
    lines += [
        "",
        "Device AKA = RAND, AUTN → SQN, MAC-A (constant-time), RES, CK, IK. The full USIM "
        "recipe adds the TS 33.102 Annex C SQN check and the new SQN state. Vector throughput "
        "counts vectors generated round-robin across distinct subscribers.",
        "",
    ]
    return "\n".join(lines)
