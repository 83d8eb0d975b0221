"""Pure. Errors of the TPM TRE, under trelab's one tree (:mod:`trelab.errors`).

::

    CheckFailed (exit 1)
    ├── EkCertificateRejected     EK certificate missing, malformed, or not chaining to the CA
    ├── CredentialRejected        credential activation failed (AK not in the TPM owning the EK)
    └── QuoteRejected(code)       a quote failed one named check of the verifier

Messages name the check, never key material, nonces of other parties or secrets.
"""

from __future__ import annotations

from trelab.errors import BadInput, CheckFailed, Unavailable

__all__ = [
    "BadInput",
    "CheckFailed",
    "CredentialRejected",
    "EkCertificateRejected",
    "QuoteRejected",
    "Unavailable",
]


class EkCertificateRejected(CheckFailed):
    """An EK certificate is absent, not X.509, or does not chain to the manufacturer CA
    (TR 33.812 §7.1.2.1: unique certified TRE identity)."""


class CredentialRejected(CheckFailed):
    """TPM2_ActivateCredential refused the challenge, or released a different secret: the AK
    is not proven to live in the TPM that owns the EK (TPM 2.0 Part 1 §24)."""


class QuoteRejected(CheckFailed):
    """A quote failed verification; ``code`` names which check (``signature``, ``nonce``,
    ``magic``, ``type``, ``pcr-selection``, ``pcr-digest``, ``reference``, ``clock``,
    ``ak``), ``detail`` says what was wrong."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"quote rejected ({code}): {detail}")
        self.code = code
        self.detail = detail

    @property
    def check(self) -> str:
        """The earlier name of :attr:`code`."""
        return self.code
