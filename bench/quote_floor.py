"""Edge: TPM transport. The floor quote+verify is held to: one TPM2_Quote marshalled here and
sent bare on the connection's transport (no client stack, response code checked), and one
ECDSA verification of a real quote's signature with ``cryptography`` (key and DER signature
prepared). ``make bench``'s TPM row and ``python -m bench.lean_bench`` time the same two."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from tpm import lean
from tpm.tss import Transport
from tpm.verify import Evidence
from trelab.errors import LocalProtocolError

__all__ = ["BareQuote", "BareSignature"]

_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class BareQuote:
    """TPM2_Quote with a fresh 16-byte nonce, the AK's empty authValue as password, no scheme
    (the AK's own), built by :func:`tpm.lean.wrap` and sent on ``transport``."""

    def __init__(self, transport: Transport, ak_handle: int, tpml_selection: Any) -> None:
        self._transport, self._handle = transport, ak_handle
        self._params = struct.pack(">H", lean.ALG_NULL) + bytes(tpml_selection.marshal())

    def send(self) -> None:
        """Raises:
        LocalProtocolError: the TPM refused the quote.
        """
        command, _ = lean.wrap(
            lean.CC.QUOTE, [self._handle], [b""],
            lean.tpm2b(os.urandom(16)) + self._params, [lean.Auth(None)],
        )  # fmt: skip
        response = self._transport.execute(command)
        if struct.unpack_from(">I", response, 6)[0] != 0:
            raise LocalProtocolError("bare TPM2_Quote refused")


@dataclass(frozen=True)
class BareSignature:
    """One quote's ECDSA P-256 signature as DER with its signed message and the AK's key."""

    key: ec.EllipticCurvePublicKey
    der: bytes
    message: bytes

    @classmethod
    def of(cls, evidence: Evidence) -> BareSignature:
        sig = evidence.signature
        key = evidence.ak.key
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise LocalProtocolError("the bare signature floor needs an ECC AK")
        return cls(key, encode_dss_signature(sig.ecdsa_r, sig.ecdsa_s), evidence.message)

    def verify(self) -> None:
        """Raises:
        cryptography.exceptions.InvalidSignature: not this message's signature.
        """
        self.key.verify(self.der, self.message, _ECDSA_SHA256)
