"""Pure interfaces (plus the software AES holder): where K lives is a parameter of the algorithms.

Milenage needs only E_K on 16-byte blocks; TUAK needs the Keccak-f[1600] permutation applied
to a state holding K; the HMAC-SHA-256 set needs HMAC-SHA-256 under K. Software, a TPM
(EncryptDecrypt2, TPM2_HMAC) or a card implement these, so the
same f1…f5* code runs whether K sits in memory or inside a TRE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from trelab.errors import BadInput

__all__ = ["BlockCipher", "HmacKeyholder", "KeccakKeyholder", "SoftwareAes"]


class BlockCipher(ABC):
    """E_K in ECB on whole 16-byte blocks, several blocks per call (TS 35.206 §4.1 kernel)."""

    @abstractmethod
    def encrypt_blocks(self, data: bytes) -> bytes:
        """Encrypt ``data`` (a multiple of 16 bytes) block by block under K."""


class KeccakKeyholder(ABC):
    """TUAK kernel (TS 35.231 §6): Keccak-f[1600] over a 200-byte state that includes K."""

    key_bits: int  # 128 or 256: the caller encodes it in INSTANCE

    @abstractmethod
    def permute(self, state: bytes, iterations: int) -> bytes:
        """Write K into the KEY field of ``state`` and apply Keccak-f[1600] ``iterations`` times."""


class HmacKeyholder(ABC):
    """HMAC-SHA-256 under K (RFC 2104; TPM 2.0 Part 3 §15.5 TPM2_HMAC): the HMAC-AKA kernel."""

    @abstractmethod
    def mac(self, message: bytes) -> bytes:
        """The full 32-byte HMAC-SHA-256 of ``message`` under K."""


class SoftwareAes(BlockCipher):
    """AES-128 from ``cryptography``; one ECB context per key, reused for every call.

    ECB has no chaining state, so a single encryptor safely serves every call; this keeps a
    Milenage run to two native calls.
    """

    __slots__ = ("_update",)

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise BadInput(f"K: {len(key)} bytes, expected 16")
        encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - block fn
        self._update = encryptor.update

    def encrypt_blocks(self, data: bytes) -> bytes:
        return self._update(data)

    def __repr__(self) -> str:
        return "SoftwareAes(K=<hidden>)"
