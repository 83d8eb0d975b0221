"""Pure. The benchmark report's JSON schema (versioned) and a validator for it.

Version 3 layout (version 2 is the same without ``provisioning_throughput``; both validate)::

    {
      "schema": "trelab-bench", "schema_version": 3,
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
         "samples": [ns, …], "errors": [str, …],
         "breakdown"?: {"unit": "ns", "median": {part: ns},   # optional (v3): where each
                        "samples": {part: [ns, …]}}}         # sample's time went, summing to it
      ],
      "provisioning_throughput": {            # optional (v3): one server, c devices at once
        "generated", "ok": bool, "verdict": str, "interrupted": bool,
        "method": {"levels": [int], "per_device": int, …},
        "environment": {"cores", "swtpm", …},
        "warmup": LEVEL | null,               # one provisioning before the curve, not in it
        "levels": [{                          # LEVEL, one per concurrency"concurrency", "per_device", "attempted", "succeeded", "failed": int,
                    "states": {state: int}, "wall_s": float,
                    "throughput_per_s": float | null,
                    "latency_ms": {"median", "p95", "min", "max"} | null,
                    "tpm_ms_median": float | null,
                    "cpu_s": {"server", "agents", "swtpm", "host"?}, "cores_busy": float | null,
                    "server_cpu_ms_per_provisioning": float | null,
                    "errors": [str]}],
        "server": {"responses": {status: int} | null, "mids_by_state": {state: int},
                   "active_mids": int}
      }
    }
"""

from __future__ import annotations

from typing import Any

from trelab.errors import BadInput

__all__ = [
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "SUPPORTED_VERSIONS",
    "THROUGHPUT",
    "validate_report",
    "validate_throughput",
]

SCHEMA_NAME = "trelab-bench"
SCHEMA_VERSION = 3
SUPPORTED_VERSIONS = (2, 3)  # v3 only adds the optional provisioning_throughput section
THROUGHPUT = "provisioning_throughput"

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
_THROUGHPUT = {
    "generated": str,
    "ok": bool,
    "verdict": str,
    "interrupted": bool,
    "method": dict,
    "environment": dict,
    "levels": list,
    "server": dict,
}
_LEVEL_COUNTS = ("concurrency", "per_device", "attempted", "succeeded", "failed")
_CPU = ("server", "agents", "swtpm")
_LATENCY = ("median", "p95", "min", "max")


MAX_SAMPLE_NS = 10**18  # one operation's duration: 31 years bounds it, and floats hold it


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _counts(value: Any) -> bool:
    """{name: int ≥ 0}"""
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    )


def _check_level(name: str, level: Any) -> None:
    where = f"{THROUGHPUT}.{name}"
    if not isinstance(level, dict):
        raise BadInput(f"report: {where} is not an object")
    for key in _LEVEL_COUNTS:
        value = level.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadInput(f"report: {where}.{key} missing or not a count")
    if level["succeeded"] + level["failed"] != level["attempted"]:
        raise BadInput(f"report: {where}: succeeded + failed != attempted")
    if level["attempted"] != level["concurrency"] * level["per_device"]:
        raise BadInput(f"report: {where}: attempted != concurrency × per_device")
    if not _counts(level.get("states")):
        raise BadInput(f"report: {where}.states missing or not counts")
    if not _number(level.get("wall_s")) or level["wall_s"] < 0:
        raise BadInput(f"report: {where}.wall_s missing or not a duration")
    for key in (
        "throughput_per_s",
        "tpm_ms_median",
        "cores_busy",
        "server_cpu_ms_per_provisioning",
    ):
        if key not in level or not (level[key] is None or _number(level[key])):
            raise BadInput(f"report: {where}.{key} missing or not a number")
    latency = level.get("latency_ms", 0)
    if latency is not None and not (
        isinstance(latency, dict) and all(_number(latency.get(k)) for k in _LATENCY)
    ):
        raise BadInput(f"report: {where}.latency_ms missing or not median/p95/min/max")
    if level["succeeded"] and latency is None:
        raise BadInput(f"report: {where}.latency_ms missing for successful provisionings")
    cpu = level.get("cpu_s")
    if not isinstance(cpu, dict) or not all(_number(cpu.get(k)) for k in _CPU):
        raise BadInput(f"report: {where}.cpu_s missing or not server/agents/swtpm seconds")
    if "host" in cpu and not _number(cpu["host"]):
        raise BadInput(f"report: {where}.cpu_s.host is not a number")
    errors = level.get("errors")
    if not isinstance(errors, list) or not all(isinstance(e, str) for e in errors):
        raise BadInput(f"report: {where}.errors must be a list of strings")


def validate_throughput(section: Any) -> None:
    """Check a ``provisioning_throughput`` section (in a report or written alone by
    ``trelab bench throughput``).

    Raises:
        BadInput: naming the first field that does not follow the layout.
    """
    if not isinstance(section, dict):
        raise BadInput(f"report: {THROUGHPUT} is not an object")
    for key, kind in _THROUGHPUT.items():
        if not isinstance(section.get(key), kind):
            raise BadInput(f"report: {THROUGHPUT}.{key} missing or not {kind.__name__}")
    env = section["environment"]
    cores = env.get("cores", "missing")  # os.cpu_count() may say None: unknown
    if not isinstance(cores, int | None) or not isinstance(env.get("swtpm"), str):
        raise BadInput(f"report: {THROUGHPUT}.environment needs cores and swtpm")
    for i, level in enumerate(section["levels"]):
        _check_level(f"levels[{i}]", level)
    if section.get("warmup") is not None:
        _check_level("warmup", section["warmup"])
    server = section["server"]
    responses = server.get("responses", 0)
    if responses is not None and not _counts(responses):
        raise BadInput(f"report: {THROUGHPUT}.server.responses missing or not counts")
    if not _counts(server.get("mids_by_state")):
        raise BadInput(f"report: {THROUGHPUT}.server.mids_by_state missing or not counts")
    active = server.get("active_mids")
    if not isinstance(active, int) or active != server["mids_by_state"].get("ACTIVE", 0):
        raise BadInput(f"report: {THROUGHPUT}.server.active_mids does not match mids_by_state")
    for i, run in enumerate(section.get("matrix", [])):
        where = f"{THROUGHPUT}.matrix[{i}]"
        if not isinstance(run, dict) or run.get("store") not in ("sqlite", "postgres"):
            raise BadInput(f"report: {where}.store must be sqlite or postgres")
        workers = run.get("workers")
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise BadInput(f"report: {where}.workers must be a worker count or null")
        if not isinstance(run.get("levels"), list) or not isinstance(run.get("ok"), bool):
            raise BadInput(f"report: {where} needs levels and ok")
        for j, level in enumerate(run["levels"]):
            _check_level(f"matrix[{i}].levels[{j}]", level)


def _check_breakdown(where: str, breakdown: Any) -> None:
    medians = breakdown.get("median") if isinstance(breakdown, dict) else None
    samples = breakdown.get("samples") if isinstance(breakdown, dict) else None
    if not isinstance(medians, dict) or not all(_number(v) for v in medians.values()):
        raise BadInput(f"report: {where}.median must map parts to ns")
    if not isinstance(samples, dict) or not all(
        isinstance(v, list) and all(_number(x) for x in v) for v in samples.values()
    ):
        raise BadInput(f"report: {where}.samples must map parts to lists of ns")


def validate_report(data: Any) -> None:
    """Raise BadInput naming the first field that does not follow the schema.

    Raises:
        BadInput: wrong schema name or version, a missing field, or a field of the wrong type.
    """
    if not isinstance(data, dict):
        raise BadInput("report: not a JSON object")
    if data.get("schema") != SCHEMA_NAME or data.get("schema_version") not in SUPPORTED_VERSIONS:
        raise BadInput(
            f"report: schema {data.get('schema')!r} v{data.get('schema_version')!r}, "
            f"expected {SCHEMA_NAME!r} v{' or v'.join(map(str, SUPPORTED_VERSIONS))}"
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
            if not isinstance(summary, dict):
                raise BadInput(f"report: records[{i}].summary is not an object")
            for key in _SUMMARY:
                if not isinstance(summary.get(key), int | float):
                    raise BadInput(f"report: records[{i}].summary.{key} missing or not a number")
        if not all(_number(s) and 0 <= s <= MAX_SAMPLE_NS for s in record["samples"]):
            raise BadInput(f"report: records[{i}].samples must be durations in ns")
        for key in ("ci95_median", "overhead_vs_raw", "raw_reference"):
            if key not in record:
                raise BadInput(f"report: records[{i}].{key} missing")
        if "breakdown" in record:
            _check_breakdown(f"records[{i}].breakdown", record["breakdown"])
    for i, skip in enumerate(data["skipped"]):
        if not isinstance(skip, dict) or not isinstance(skip.get("reason"), str):
            raise BadInput(f"report: skipped[{i}] needs a reason")
    if THROUGHPUT in data:
        if data["schema_version"] < 3:
            raise BadInput(f"report: {THROUGHPUT} needs schema v3")
        validate_throughput(data[THROUGHPUT])
