"""Edge: clock. ``trelab aka bench``: device-side AKA latency and HSS vector throughput.

Figures are medians of chunked samples; each is set against one raw AES-128 call made by the
same process in the same run (the raw transport of a software keyholder), never asserted.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Literal

from aka.algorithm import AkaAlgorithm
from aka.hss import Hss, Subscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.native import NATIVE_AVAILABLE, NativeMilenage
from aka.sqn import SqnState
from aka.usim import usim_authenticate
from trelab.errors import Unavailable

from .stats import Summary, ratio, summarize
from .timing import per_call_ns

__all__ = ["AkaBenchResult", "run_aka_bench"]

Kernel = Literal["auto", "python", "native"]
HSS_BATCH = 5  # vectors per request: the usual maximum of MAP SendAuthInfo / S6a AIR


@dataclass(frozen=True)
class AkaBenchResult:
    """What ``trelab aka bench`` measured (ns per operation, vectors per second)."""

    kernel: str
    subscribers: int
    raw_aes: Summary
    aka: Summary
    usim: Summary
    av_per_s: float
    av_per_s_batch1: float
    batch: int

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": "milenage",
            "kernel": self.kernel,
            "subscribers": self.subscribers,
            "aka_ns_median": self.aka.median,
            "usim_ns_median": self.usim.median,
            "raw_aes_ns_median": self.raw_aes.median,
            "aka_vs_raw_aes": ratio(self.aka.median, self.raw_aes.median),
            "usim_vs_raw_aes": ratio(self.usim.median, self.raw_aes.median),
            "av_per_s": self.av_per_s,
            "av_per_s_batch1": self.av_per_s_batch1,
            "batch": self.batch,
            "samples": {
                "raw_aes_ns": self.raw_aes.to_json(),
                "aka_ns": self.aka.to_json(),
                "usim_ns": self.usim.to_json(),
            },
            "method": (
                "aka: RAND, AUTN -> SQN, MAC-A checked in constant time, RES, CK, IK "
                "(algorithm.check_autn); usim: the whole USIM recipe incl. the TS 33.102 "
                "Annex C SQN check and state update; medians of chunked samples "
                "(perf_counter_ns around a tight loop / chunk); av_per_s: vectors per "
                "second generated round-robin over distinct subscribers in requests of "
                "`batch` vectors; raw_aes: one 16-byte AES-128-ECB call through cryptography"
            ),
        }


def _algorithm(kernel: str, k: bytes, opc: bytes) -> AkaAlgorithm:
    if kernel == "native" or (kernel == "auto" and NATIVE_AVAILABLE):
        return NativeMilenage(k, opc)
    return Milenage(SoftwareAes(k), opc)


def run_aka_bench(
    *, subscribers: int = 10_000, kernel: Kernel = "auto", samples: int = 31
) -> AkaBenchResult:
    """Measure and return; takes a few seconds for 10 000 subscribers."""
    if kernel == "native" and not NATIVE_AVAILABLE:
        raise Unavailable("native Milenage kernel not built", fix="re-run scripts/setup.sh")
    used = "native" if kernel == "native" or (kernel == "auto" and NATIVE_AVAILABLE) else "python"
    chunk = 400

    # raw transport: one AES block through the same library the software keyholder uses
    raw = SoftwareAes(os.urandom(16)).encrypt_blocks
    block = os.urandom(16)

    def raw_body(n: int) -> None:
        for _ in range(n):
            raw(block)

    raw_samples = per_call_ns(raw_body, chunk=chunk, samples=samples)

    # device side: fresh AUTNs from an HSS so that every AKA is a genuine success
    k, opc = os.urandom(16), os.urandom(16)
    hss = Hss(os.urandom)
    hss.add(Subscriber("001010000000001", _algorithm(used, k, opc)))
    needed = chunk * (samples + 1) + chunk
    vectors = hss.generate_vectors("001010000000001", needed)
    device = _algorithm(used, k, opc)
    position = 0

    def aka_body(n: int) -> None:
        nonlocal position
        check = device.check_autn
        for v in vectors[position : position + n]:
            check(v.rand, v.autn)
        position = (position + n) % (len(vectors) - n)

    aka_samples = per_call_ns(aka_body, chunk=chunk, samples=samples)

    state = SqnState()
    cursor = 0

    def usim_body(n: int) -> None:
        nonlocal state, cursor
        for v in vectors[cursor : cursor + n]:
            result, state = usim_authenticate(device, state, v.rand, v.autn)
            if result.result != "success":  # pragma: no cover - would be a bug
                raise AssertionError(f"benchmark AKA failed: {result.result}")
        cursor += n

    usim_samples = per_call_ns(usim_body, chunk=chunk, samples=samples)

    # network side: many distinct subscribers, round-robin
    big = Hss(os.urandom)
    imsis = [f"00101{i:010d}" for i in range(subscribers)]
    for imsi in imsis:
        big.add(Subscriber(imsi, _algorithm(used, os.urandom(16), os.urandom(16))))

    def throughput(batch: int) -> float:
        rounds = max(1, 20_000 // (subscribers * batch))
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            made = 0
            for _ in range(rounds):
                for imsi in imsis:
                    made += len(big.generate_vectors(imsi, batch))
            rates.append(made / (time.perf_counter() - start))
        return summarize(rates).median

    return AkaBenchResult(
        kernel=used,
        subscribers=subscribers,
        raw_aes=summarize(raw_samples),
        aka=summarize(aka_samples),
        usim=summarize(usim_samples),
        av_per_s=throughput(HSS_BATCH),
        av_per_s_batch1=throughput(1),
        batch=HSS_BATCH,
    )
