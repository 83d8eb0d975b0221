"""Edge: clock, TPM. Quote + verify through trelab against one raw TPM2_Quote (issue 3 goal:
quote + verify ≤ 1.2× a raw quote), on whatever TPM the TCTI names.

Samples are interleaved (raw, trelab, raw, …) so drift hits both alike. "raw" is one ESAPI
``quote`` with the AK handle and the TPML_PCR_SELECTION prepared; "trelab" is
:meth:`tpm.quote.Quoter.quote` (Quote, PCR values checked against the signed pcrDigest, read
again only when stale) followed by unmarshaling
and :func:`tpm.verify.verify_quote`, in memory; "trelab+files" adds writing the evidence
directory (atomic, fsynced) and reading it back, what the CLI does.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from tpm2_pytss import TPM2B_DATA

from tpm.connection import TpmConnection
from tpm.evidence import evidence_from_files, load_evidence, write_evidence
from tpm.identity import AkKind, ensure_ak
from tpm.marshal import tpml_from_selection
from tpm.pcrsel import parse_selection
from tpm.quote import Quoter
from tpm.verify import verify_quote

from .stats import Summary, ratio, summarize

__all__ = ["AttestBenchResult", "run_attest_bench"]


@dataclass(frozen=True)
class AttestBenchResult:
    """Medians in ms of each variant, and the ratios the issue asks about."""

    tcti: str
    ak_kind: str
    pcrlist: str
    raw_quote: Summary
    trelab_quote: Summary
    quote_verify: Summary
    quote_verify_files: Summary
    verify_only: Summary

    def to_json(self) -> dict[str, Any]:
        med = self.raw_quote.median
        return {
            "tcti": self.tcti,
            "ak_kind": self.ak_kind,
            "pcrlist": self.pcrlist,
            "raw_quote_ms": med,
            "trelab_quote_ms": self.trelab_quote.median,
            "quote_verify_ms": self.quote_verify.median,
            "quote_verify_files_ms": self.quote_verify_files.median,
            "verify_only_ms": self.verify_only.median,
            "quote_verify_vs_raw": ratio(self.quote_verify.median, med),
            "quote_verify_files_vs_raw": ratio(self.quote_verify_files.median, med),
            "goal": "quote_verify_vs_raw <= 1.2",
            "samples": {
                "raw_quote_ms": self.raw_quote.to_json(),
                "trelab_quote_ms": self.trelab_quote.to_json(),
                "quote_verify_ms": self.quote_verify.to_json(),
                "quote_verify_files_ms": self.quote_verify_files.to_json(),
                "verify_only_ms": self.verify_only.to_json(),
            },
        }


def _ms(start: int) -> float:
    return (time.perf_counter_ns() - start) / 1e6


def run_attest_bench(
    tcti: str,
    *,
    samples: int = 200,
    kind: AkKind = "ecc",
    pcrlist: str = "sha256:0,1,2,3,16",
) -> AttestBenchResult:
    """Measure; nothing is asserted. The AK is created if absent (persistent, reused)."""
    selection = parse_selection(pcrlist)
    tpml = tpml_from_selection(selection)
    raw: list[float] = []
    mine: list[float] = []
    full: list[float] = []
    files_ms: list[float] = []
    verify_ms: list[float] = []
    with TpmConnection(tcti) as conn, tempfile.TemporaryDirectory() as tmp:
        ak, _ = ensure_ak(conn, kind)
        with Quoter(conn, ak) as quoter:
            handle = quoter.handle
            for i in range(samples + 5):
                nonce = os.urandom(16)
                start = time.perf_counter_ns()
                conn.esys.quote(handle, tpml, TPM2B_DATA(nonce))
                t_raw = _ms(start)

                start = time.perf_counter_ns()
                files = quoter.quote(nonce, selection)
                t_quote = _ms(start)
                verify_quote(evidence_from_files(files), nonce=nonce)
                t_full = _ms(start)
                start = time.perf_counter_ns()
                verify_quote(evidence_from_files(files), nonce=nonce)
                t_verify = _ms(start)

                start = time.perf_counter_ns()
                files = quoter.quote(nonce, selection)
                write_evidence(tmp, files)
                verify_quote(load_evidence(tmp), nonce=nonce)
                t_files = _ms(start)
                if i >= 5:  # warm-up: lazy imports, first-use caches
                    raw.append(t_raw)
                    mine.append(t_quote)
                    full.append(t_full)
                    verify_ms.append(t_verify)
                    files_ms.append(t_files)
    return AttestBenchResult(
        tcti=tcti,
        ak_kind=kind,
        pcrlist=pcrlist,
        raw_quote=summarize(raw),
        trelab_quote=summarize(mine),
        quote_verify=summarize(full),
        quote_verify_files=summarize(files_ms),
        verify_only=summarize(verify_ms),
    )


if __name__ == "__main__":  # pragma: no cover - manual run: python -m bench.attest_bench TCTI
    import json
    import sys

    from tpm.connection import resolve_tcti

    target = resolve_tcti(sys.argv[1] if len(sys.argv) > 1 else None)
    for ak_kind in ("ecc", "rsa"):
        result = run_attest_bench(target, kind=ak_kind)
        data = result.to_json()
        del data["samples"]
        print(json.dumps(data, indent=2))
