"""Pure. The benchmark report's JSON schema (versioned) and a validator for it.

Version 2 layout::

    {
      "schema": "trelab-bench", "schema_version": 2,
      "generated": ISO-8601 UTC, "ok": bool, "verdict": str,
      "environment": {"trelab", "python", "openssl", "cpu", "cores", "platform", …},
      "method": {"rounds", "quick", "seed", "interleaved": true, "statistic": "median", …},
      "lab": {…} | null,                      # lab components when the lab ran
      "conformance": {"total", "passed", "outputs_checked", "results": [...]},
      "tres": {TRE: {environment…}},          # what each TRE is (vendor, mode, reader, ATR…)
      "skipped": [{"tre", "reason"}],         # TREs that could not run here, and why
      "records": [                            # one per TRE × operation
        {"tre", "operation", "raw": bool, "detail", "batch", "unit": "ns",
         "summary": {"n", "median", "p5", "p95", "p99", "mad", "min", "max", "mean"} | null,
         "ci95_median": [lo, hi] | null,
         "raw_reference": operation name | null, "overhead_vs_raw": float | null,
         "samples": [ns, …], "errors": [str, …]}
      ]
    }
"""

from __future__ import annotations

from typing import Any

from trelab.errors import BadInput

__all__ = ["SCHEMA_NAME", "SCHEMA_VERSION", "validate_report"]

SCHEMA_NAME = "trelab-bench"
SCHEMA_VERSION = 2

_TOP = {
    "schema": str,
    "schema_version": int,
    "generated": str,
    "ok": bool,
    "verdict": str,
    "environment": dict,
    "method": dict,
    "conformance": dict,
    "tres": dict,
    "skipped": list,
    "records": list,
}
_RECORD = {
    "tre": str,
    "operation": str,
    "raw": bool,
    "detail": str,
    "batch": int,
    "unit": str,
    "samples": list,
    "errors": list,
}
_SUMMARY = ("n", "median", "p5", "p95", "p99", "mad", "min", "max", "mean")


def validate_report(data: Any) -> None:
    """Raise BadInput naming the first field that does not follow the schema.

    Raises:
        BadInput: wrong schema name or version, a missing field, or a field of the wrong type.
    """
    if not isinstance(data, dict):
        raise BadInput("report: not a JSON object")
    if data.get("schema") != SCHEMA_NAME or data.get("schema_version") != SCHEMA_VERSION:
        raise BadInput(
            f"report: schema {data.get('schema')!r} v{data.get('schema_version')!r}, "
            f"expected {SCHEMA_NAME!r} v{SCHEMA_VERSION}"
        )
    for key, kind in _TOP.items():
        if not isinstance(data.get(key), kind):
            raise BadInput(f"report: {key!r} missing or not {kind.__name__}")
    for i, record in enumerate(data["records"]):
        if not isinstance(record, dict):
            raise BadInput(f"report: records[{i}] is not an object")
        for key, kind in _RECORD.items():
            if not isinstance(record.get(key), kind):
                raise BadInput(f"report: records[{i}].{key} missing or not {kind.__name__}")
        summary = record.get("summary")
        if summary is not None:
            for key in _SUMMARY:
                if not isinstance(summary.get(key), int | float):
                    raise BadInput(f"report: records[{i}].summary.{key} missing or not a number")
        if not all(isinstance(s, int | float) for s in record["samples"]):
            raise BadInput(f"report: records[{i}].samples must be numbers")
        for key in ("ci95_median", "overhead_vs_raw", "raw_reference"):
            if key not in record:
                raise BadInput(f"report: records[{i}].{key} missing")
    for i, skip in enumerate(data["skipped"]):
        if not isinstance(skip, dict) or not isinstance(skip.get("reason"), str):
            raise BadInput(f"report: skipped[{i}] needs a reason")
