"""Edge: clock. TUAK on a software keyholder: device AKA against one Keccak-f[1600] call."""

from __future__ import annotations

import os

from aka.hss import Hss, Subscriber
from aka.keccak import keccak_f1600_rate
from aka.tuak import SoftwareKeccak, Tuak, build_in

from .stats import ratio, summarize
from .timing import per_call_ns

__all__ = ["run_tuak_bench"]


def run_tuak_bench(samples: int = 21, chunk: int = 100) -> dict[str, float]:
    """Median ns of one keyed permutation (the raw kernel) and of a device-side TUAK AKA."""
    k, topc = os.urandom(16), os.urandom(32)
    holder = SoftwareKeccak(k)
    state = build_in(topc, 0x40, os.urandom(16), bytes(2), bytes(6))

    def raw_body(n: int) -> None:
        for _ in range(n):
            holder.permute_rate(state, 1)

    hss = Hss(os.urandom)
    hss.add(Subscriber("001010000000002", Tuak(SoftwareKeccak(k), topc)))
    vectors = hss.generate_vectors("001010000000002", chunk * (samples + 2))
    device = Tuak(SoftwareKeccak(k), topc)
    cursor = 0

    def aka_body(n: int) -> None:
        nonlocal cursor
        for v in vectors[cursor : cursor + n]:
            device.check_autn(v.rand, v.autn)
        cursor += n

    keccak = summarize(per_call_ns(raw_body, chunk=chunk * 10, samples=samples))
    aka = summarize(per_call_ns(aka_body, chunk=chunk, samples=samples))
    unpadded = bytes(200)  # not SHAKE-padded: forces the pure-Python permutation

    def python_body(n: int) -> None:
        for _ in range(n):
            keccak_f1600_rate(unpadded)

    python_keccak = summarize(per_call_ns(python_body, chunk=20, samples=5))
    return {
        "keccak_ns_median": keccak.median,
        "python_keccak_ns_median": python_keccak.median,
        "aka_ns_median": aka.median,
        "aka_vs_keccak": ratio(aka.median, keccak.median),
    }
