"""Edge: clock, randomness. The software reference TRE: K in host memory.

Rows: ``software (native kernel)`` (Milenage fused in C around OpenSSL AES) and ``software
(python kernel)`` (the reference Milenage over :class:`aka.keyholder.SoftwareAes`). The raw
transport is one 16-byte AES-128-ECB call through ``cryptography``.
"""

from __future__ import annotations

import os
import platform
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import cryptography

from aka.algorithm import AkaAlgorithm
from aka.hss import AuthVector, Hss, Subscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.native import NATIVE_AVAILABLE, NativeMilenage
from aka.sqn import SqnState
from aka.suci import Profile
from aka.tuak import SoftwareKeccak, Tuak
from aka.usim import AkaSyncFailure, usim_authenticate
from trelab.errors import LocalProtocolError, Unavailable

from ..harness import Case
from .five_g import HomeKeys, me_5g, suci_once

__all__ = ["SoftwareTre"]


def _vector_stream(hss: Hss, imsi: str, chunk: int = 512) -> Iterator[AuthVector]:
    while True:
        yield from hss.generate_vectors(imsi, chunk)


class SoftwareTre:
    """The software reference, in the native or the pure-Python Milenage kernel."""

    def __init__(self, kernel: str = "native", *, subscribers: int = 10_000) -> None:
        if kernel == "native" and not NATIVE_AVAILABLE:
            raise Unavailable("native Milenage kernel not built", fix="re-run scripts/setup.sh")
        self.kernel = kernel
        self.tre = f"software ({kernel} kernel)"
        self.subscribers = subscribers

    def _milenage(self, k: bytes, opc: bytes) -> AkaAlgorithm:
        if self.kernel == "native":
            return NativeMilenage(k, opc)
        return Milenage(SoftwareAes(k), opc)

    def environment(self) -> dict[str, Any]:
        return {
            "kind": "software",
            "kernel": self.kernel,
            "python": platform.python_version(),
            "openssl": ssl.OPENSSL_VERSION,
            "cryptography": cryptography.__version__,
            "aka_mode": "K in host memory",
        }

    def _aka_case(
        self,
        operation: str,
        algorithm: Callable[[], AkaAlgorithm],
        batch: int,
        *,
        five_g: bool = False,
    ) -> Case:
        hss = Hss(os.urandom)
        hss.add(Subscriber("001010000000001", algorithm()))
        device = algorithm()
        stream = _vector_stream(hss, "001010000000001")
        # pre-draw vectors outside the timed body (generation is its own row)
        pool = [next(stream) for _ in range(batch * 64)]
        state = SqnState()
        position = 0

        def body(n: int) -> None:
            nonlocal state, position
            if position + n > len(pool):
                raise LocalProtocolError("benchmark vector pool exhausted")
            for v in pool[position : position + n]:
                result, state = usim_authenticate(device, state, v.rand, v.autn)
                if five_g:
                    me_5g(result, v, operation)
                elif result.result != "success":
                    raise LocalProtocolError(f"benchmark AKA gave {result.result}")
            position += n

        def refill(n: int) -> None:
            nonlocal position, pool
            if position + n > len(pool):
                pool = pool[position:] + [next(stream) for _ in range(batch * 64)]
                position = 0
            body(n)

        detail = "USIM side incl. SQN check"
        if five_g:
            detail += " + the ME's RES*, K_AUSF, K_SEAF, K_AMF (TS 33.501 Annex A)"
        return Case(self.tre, operation, refill, batch=batch, detail=detail)

    def _suci_case(self, profile: Profile, batch: int) -> Case:
        keys = HomeKeys()

        def body(n: int) -> None:
            for _ in range(n):
                suci_once(keys, profile, None)

        operation = "suci" if profile is Profile.B else "suci (profile A)"
        return Case(
            self.tre, operation, body, batch=batch,
            detail=f"Profile {profile.name}: fresh ephemeral key in software ({'X25519' if profile is Profile.A else 'P-256'}), "
            "ECDH, X9.63 KDF, AES-128-CTR, HMAC-SHA-256 tag (cryptography)",
        )  # fmt: skip

    def cases(self, quick: bool) -> list[Case]:
        k, opc, topc = os.urandom(16), os.urandom(16), os.urandom(32)
        raw_aes = SoftwareAes(os.urandom(16)).encrypt_blocks
        block = os.urandom(16)

        def raw(n: int) -> None:
            for _ in range(n):
                raw_aes(block)

        batch = 20 if quick else 100
        cases = [
            Case(self.tre, "raw: AES-128 block", raw, batch=batch * 5, raw=True),
            self._aka_case("aka-milenage", lambda: self._milenage(k, opc), batch),
            self._aka_case("aka-5g", lambda: self._milenage(k, opc), batch, five_g=True),
            self._suci_case(Profile.B, max(1, batch // 5)),
            self._suci_case(Profile.A, max(1, batch // 5)),
            self._aka_case("aka-tuak", lambda: Tuak(SoftwareKeccak(k), topc), max(1, batch // 5)),
            self._resync_case(k, opc, max(1, batch // 5)),
            self._av_case(quick),
        ]
        return cases

    def _resync_case(self, k: bytes, opc: bytes, batch: int) -> Case:
        """A replayed AUTN: the USIM answers AUTS, the HSS recovers SQN_MS and resyncs."""
        hss = Hss(os.urandom)
        hss.add(Subscriber("001010000000001", self._milenage(k, opc)))
        device = self._milenage(k, opc)
        (v,) = hss.generate_vectors("001010000000001")
        state = usim_authenticate(device, SqnState(), v.rand, v.autn)[1]

        def body(n: int) -> None:
            for _ in range(n):
                result, _ = usim_authenticate(device, state, v.rand, v.autn)
                if not isinstance(result, AkaSyncFailure):
                    raise LocalProtocolError("replayed AUTN was not refused")
                hss.resynchronise("001010000000001", v.rand, result.auts)

        return Case(self.tre, "aka-resync", body, batch=batch, detail="AUTS + SQN_MS recovery")

    def _av_case(self, quick: bool) -> Case:
        count = min(self.subscribers, 1_000 if quick else self.subscribers)
        hss = Hss(os.urandom)
        imsis = [f"00101{i:010d}" for i in range(count)]
        for imsi in imsis:
            hss.add(Subscriber(imsi, self._milenage(os.urandom(16), os.urandom(16))))
        cursor = 0
        per_request = 5

        def body(n: int) -> None:  # n vectors, in requests of 5, round-robin over subscribers
            nonlocal cursor
            for _ in range(n // per_request):
                hss.generate_vectors(imsis[cursor], per_request)
                cursor = (cursor + 1) % count
            if n % per_request:
                hss.generate_vectors(imsis[cursor], n % per_request)

        return Case(
            self.tre,
            "av-generation",
            body,
            batch=500 if quick else 2_500,
            detail=f"per vector; requests of {per_request} over {count:,} subscribers",
        )

    def close(self) -> None:
        return None
