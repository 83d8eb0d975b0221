"""Benchmark reports as ``trelab bench compare`` reads them (two report.json files): the
schema check and the comparison. One side is a genuine report, the other the fuzzer's; only
typed errors may leave."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from typing import Any

from bench.schema import SCHEMA_NAME, SCHEMA_VERSION
from host.cli.bench_cmd import _compare
from tests.fuzz.oracle import typed
from tests.fuzz.scratch import scratch_dir

_DIR = scratch_dir("bench")


def _record(tre: str, operation: str, samples: list[float], raw: bool = False) -> dict[str, Any]:
    ordered = sorted(samples)
    median = ordered[len(ordered) // 2]
    return {
        "tre": tre, "operation": operation, "raw": raw, "detail": "", "batch": 1, "unit": "ns",
        "summary": {"n": len(samples), "median": median, "p5": ordered[0], "p95": ordered[-1],
                    "p99": ordered[-1], "mad": 1.0, "min": ordered[0], "max": ordered[-1],
                    "mean": sum(samples) / len(samples)},
        "ci95_median": [ordered[0], ordered[-1]],
        "raw_reference": None if raw else "raw: apdu",
        "overhead_vs_raw": None if raw else 2.0,
        "samples": samples, "errors": [],
    }  # fmt: skip


def report(scale: float = 1.0) -> dict[str, Any]:
    samples = [1000.0 * scale + i for i in range(12)]
    return {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "generated": "2026-01-01T00:00:00Z",
        "ok": True, "verdict": "fine",
        "environment": {"trelab": "0", "python": "3", "openssl": "O", "cpu": "c", "cores": 2},
        "method": {"rounds": 12, "quick": True, "seed": 3},
        "lab": None,
        "conformance": {"total": 1, "passed": 1, "outputs_checked": 7, "results": []},
        "tres": {"usim-vpcd": {"kind": "emulated"}},
        "skipped": [{"tre": "tpm-hw", "reason": "no /dev/tpmrm0"}],
        "records": [
            _record("usim-vpcd", "raw: apdu", [500.0 + i for i in range(12)], raw=True),
            _record("usim-vpcd", "aka-milenage", samples),
        ],
    }  # fmt: skip


GENUINE = json.dumps(report()).encode()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    old, new = _DIR / "old.json", _DIR / "new.json"
    fuzzed_is_new = bool(data[0] & 1)
    old.write_bytes(GENUINE if fuzzed_is_new else data[1:])
    new.write_bytes(data[1:] if fuzzed_is_new else GENUINE)
    typed(_compare, argparse.Namespace(old=str(old), new=str(new), seed=1))


def starting_inputs() -> Iterator[bytes]:
    yield b"\x01" + json.dumps(report(0.5)).encode()
    yield b"\x00" + json.dumps(report(2.0), indent=1).encode()
    damaged = report()
    damaged["records"][1]["samples"] = []
    yield b"\x01" + json.dumps(damaged).encode()
    damaged = report()
    damaged["records"][1]["summary"]["median"] = 1e999
    yield b"\x01" + json.dumps(damaged).encode()
