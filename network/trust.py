"""Edge: tpm2-pytss marshaling (no TPM). The verifier-side TPM work the roles need — EK
certificate chain (:mod:`tpm.ek`), AK checks and TPM2_MakeCredential in software
(:mod:`tpm.identity`), quote verification (:mod:`tpm.verify` on :mod:`tpm.marshal`), receipt
attestations, and the MID package builder over :mod:`tpm.package` — behind the small
:class:`~network.roles.Trust` interface, so :mod:`network.roles` stays pure.

Library and TPM-layer failures become :class:`~protocol.errors.Refused` with a short reason.
"""

from __future__ import annotations

import datetime
import hmac
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cryptography import x509

from network.roles import BuiltPackage, EkIdentity, LifecycleFacts, PackageInputs, QuoteOutcome
from protocol.errors import Refused
from tpm.errors import EkCertificateRejected, QuoteRejected
from trelab.errors import BadInput

if TYPE_CHECKING:
    from tpm.marshal import PublicArea
    from tpm.package import KForm

__all__ = ["TpmTrust", "tpm_package_builder"]

_ATTEST_CERTIFY = 0x8017


def _public_area(data: bytes, what: str) -> PublicArea:
    """A whole, canonical TPM2B_PUBLIC read on plain bytes (:mod:`tpm.marshal`'s lean half)."""
    from tpm.marshal import PublicArea

    try:
        return PublicArea.parse(data, what)
    except BadInput as exc:
        raise Refused("malformed", str(exc)) from None


class TpmTrust:
    """The roles' :class:`~network.roles.Trust` on tpm2-pytss and :mod:`tpm`, trusting the
    manufacturer CAs ``cas`` (root(s) and intermediates) for EK certificates."""

    def __init__(self, cas: Sequence[x509.Certificate]) -> None:
        if not cas:
            raise BadInput("no trusted manufacturer CA")
        self._cas = list(cas)

    def verify_ek(self, ek_cert: bytes, now: int) -> EkIdentity:
        """The TRE identity (TR 33.812 §7.1.2.1 threat 1 CM 3): the EK certificate chains to a
        trusted manufacturer CA; the EK's TPM2B_PUBLIC is rebuilt from it."""
        from tpm.ek import ek_public_area, load_certificate_der, verify_ek_chain

        try:
            cert = load_certificate_der(ek_cert)
        except EkCertificateRejected as exc:
            raise Refused("bad-ek-cert", str(exc)) from None
        when = datetime.datetime.fromtimestamp(now, datetime.UTC)
        try:
            verify_ek_chain(cert, self._cas, now=when)
        except EkCertificateRejected as exc:
            raise Refused("unknown-ca", str(exc)) from None
        try:
            public = ek_public_area(cert)
        except EkCertificateRejected as exc:
            raise Refused("bad-ek-cert", str(exc)) from None
        name = public.name()
        return EkIdentity(device_id=name.hex(), ek_public=public.marshal_sized(), ek_name=name)

    def ak_name(self, ak_public: bytes) -> bytes:
        """The AK's TPM name, after checking it is a restricted, TPM-fixed signing key."""
        from tpm.identity import AK_ATTRIBUTES
        from tpm.marshal import object_name

        area = _public_area(ak_public, "AK public")
        missing = int(AK_ATTRIBUTES) & ~area.attributes
        if missing:
            from tpm.tss import TPMA_OBJECT

            raise Refused(
                "not-an-ak",
                f"AK public area lacks {TPMA_OBJECT(missing)!s}: not an attestation key",
            )
        try:
            return object_name(area.name_alg, ak_public[2:])
        except BadInput as exc:  # bad input (400), as for any unusable public area field
            raise BadInput(f"AK public: {exc}") from None

    def make_credential(
        self, ek_public: bytes, ak_public: bytes, secret: bytes
    ) -> tuple[bytes, bytes]:
        """TPM2_MakeCredential in software: S for the EK, bound to the AK's name."""
        from tpm.marshal import make_credential

        ek = _public_area(ek_public, "EK public")
        name = self.ak_name(ak_public)
        try:
            return make_credential(ek, secret, name)
        except BadInput as exc:
            raise Refused("bad-ek-cert", f"MakeCredential refused the EK: {exc}") from None

    def _evidence(
        self, ak_public: bytes, message: bytes, signature: bytes, pcrs: bytes, pcrlist: str
    ) -> Any:
        from tpm.marshal import ak_public_from_blob, parse_attest, parse_signature
        from tpm.pcrsel import parse_selection
        from tpm.verify import Evidence

        try:
            return Evidence(
                message=message,
                attest=parse_attest(message),
                signature=parse_signature(signature),
                ak=ak_public_from_blob(ak_public),
                pcr_values=pcrs,
                claimed=parse_selection(pcrlist),
            )
        except BadInput as exc:
            raise Refused("bad-evidence", str(exc)) from None

    def verify_quote(
        self,
        *,
        ak_public: bytes,
        ak_name: bytes,
        quote_msg: bytes,
        quote_sig: bytes,
        pcrs: bytes,
        pcrlist: str,
        qualifying: bytes,
        reference: Mapping[str, Mapping[int, bytes]],
        previous: tuple[bytes, bytes] | None,
    ) -> QuoteOutcome:
        """:func:`tpm.verify.verify_quote` with the session's qualifying data, the activated
        AK's name, the reference values and the device's previous quote (clock checks)."""
        from tpm.verify import verify_quote

        evidence = self._evidence(ak_public, quote_msg, quote_sig, pcrs, pcrlist)
        before = None
        if previous is not None:  # only its signature, AK and clock are checked: no PCR claims
            before = self._evidence(ak_public, previous[0], previous[1], b"", "sha256:0")
        try:
            verdict = verify_quote(
                evidence,
                nonce=qualifying,
                reference=reference,
                previous=before,
                expected_ak_name=ak_name,
            )
        except QuoteRejected as exc:
            raise Refused(f"quote-{exc.code}", str(exc)) from None
        except BadInput as exc:
            raise Refused("bad-evidence", str(exc)) from None
        digest = evidence.attest.pcr_digest or b""
        return QuoteOutcome(pcr_digest=digest, pcrs=verdict.pcrs)

    def receipt_expectations(
        self,
        state: str,
        slot: int,
        counter: int | None,
        lifecycle: LifecycleFacts | None = None,
    ) -> dict[bytes, tuple[int, bytes]]:
        """The NV facts a receipt must show (:mod:`tpm.nv` layout): the MID's lifecycle index
        = (state, version) — or MID_STATE[slot] = state for a MID without one — and MID_CTR =
        ``counter`` when given."""
        return _receipt_expectations(state, slot, counter, lifecycle)

    def approve_state(
        self, owner_key: Any, lifecycle: LifecycleFacts, old_state: str, new_state: str
    ) -> bytes:
        """The owner's approval (DER ECDSA) of the lifecycle-index write (old_state, version)
        → (new_state, version + 1) (:class:`tpm.nv.StateApproval`)."""
        from tpm import nv

        index = _lifecycle_index(lifecycle)
        old = nv.Lifecycle(nv.MidState[old_state], lifecycle.version)
        return nv.StateApproval.sign(
            owner_key, index, old, old.then(nv.MidState[new_state])
        ).signature

    def verify_receipt(
        self,
        *,
        ak_public: bytes,
        evidence: Mapping[str, bytes],
        qualifying: bytes,
        expect_nv: Mapping[bytes, tuple[int, bytes]],
    ) -> None:
        """Every ``<label>.attest``/``<label>.sig`` pair is signed by the AK, TPM-generated and
        fresh (extraData = ``qualifying``); each expected NV fact ``{index name: (offset,
        contents)}`` is shown by one NV_Certify (TPM 2.0 Part 3 §31.16)."""
        from tpm.marshal import ak_public_from_blob, parse_receipt_attest, parse_signature
        from tpm.verify import TPM_GENERATED_VALUE, verify_signature

        labels = sorted({name.rsplit(".", 1)[0] for name in evidence})
        if not labels:
            raise Refused("bad-receipt", "the receipt carries no TPM attestation")
        try:
            key = ak_public_from_blob(ak_public).key
        except BadInput as exc:
            raise Refused("bad-receipt", str(exc)) from None
        shown: dict[bytes, tuple[int, bytes]] = {}
        for label in labels:
            attest_blob = evidence.get(f"{label}.attest")
            sig_blob = evidence.get(f"{label}.sig")
            if attest_blob is None or sig_blob is None:
                raise Refused(
                    "bad-receipt", f"receipt {label}: needs {label}.attest and {label}.sig"
                )
            try:
                verify_signature(attest_blob, parse_signature(sig_blob, what=f"{label}.sig"), key)
            except QuoteRejected:
                raise Refused(
                    "bad-receipt", f"receipt {label}: the AK's signature does not verify"
                ) from None
            except BadInput as exc:
                raise Refused("bad-receipt", str(exc)) from None
            try:
                attest, nv = parse_receipt_attest(attest_blob, what=f"receipt {label}")
            except BadInput as exc:
                raise Refused("malformed", str(exc)) from None
            if attest.magic != TPM_GENERATED_VALUE:
                raise Refused("bad-receipt", f"receipt {label}: not TPM-generated")
            if not hmac.compare_digest(attest.extra_data, qualifying):
                raise Refused("stale-receipt", f"receipt {label}: not made for this session")
            if nv is not None:
                shown[nv.index_name] = (nv.offset, nv.contents)
            elif attest.type != _ATTEST_CERTIFY:
                raise Refused("bad-receipt", f"receipt {label}: neither Certify nor NV_Certify")
        for index_name, (offset, contents) in expect_nv.items():
            if shown.get(index_name) != (offset, contents):
                raise Refused(
                    "bad-receipt",
                    f"receipt does not show NV {index_name.hex()[:12]}… at offset {offset} as expected",
                )


def _lifecycle_index(facts: LifecycleFacts) -> Any:
    from tpm.package import LifecycleBinding, operator_public

    return LifecycleBinding(operator_public(facts.owner_public), facts.ref).index(facts.slot)


def _receipt_expectations(
    state: str, slot: int, counter: int | None, lifecycle: LifecycleFacts | None
) -> dict[bytes, tuple[int, bytes]]:
    from tpm import nv

    if lifecycle is not None:
        value = nv.Lifecycle(nv.MidState[state], lifecycle.version).encode()
        expect = {_lifecycle_index(lifecycle).name(): (0, value)}
    else:
        expect = {nv.state_index_name(): (slot, bytes((int(nv.MidState[state]),)))}
    if counter is not None:
        expect[nv.index_name(nv.MID_CTR)] = (0, counter.to_bytes(8, "big"))
    return expect


# How the DPF wraps K per algorithm set: TUAK has no TPM kernel (sealed), the HMAC-SHA-256
# set uses TPM2_HMAC on a keyed-hash key (docs/hmac-aka.md), Milenage an AES key.
_K_FORMS: dict[str, KForm] = {"tuak": "sealed", "hmac-sha256": "hmac"}


def tpm_package_builder(inputs: PackageInputs) -> BuiltPackage:
    """The DPF's builder over :func:`tpm.package.build_package`: K and OPc/TOPc wrapped to this
    TPM's EK under a fresh per-MID parent whose policy names the SRK and the validated PCR
    digest; the package travels as its compact JSON (:meth:`tpm.package.Package.wire`)."""
    from tpm.marshal import object_name
    from tpm.package import (
        AlgorithmSpec,
        LifecycleBinding,
        MidPolicy,
        MidSecrets,
        Target,
        build_package,
    )

    srk = _public_area(inputs.srk_public, "SRK public")
    try:
        srk_name = object_name(srk.name_alg, inputs.srk_public[2:])
    except BadInput as exc:  # bad input (400), as for any unusable public area field
        raise BadInput(f"SRK public: {exc}") from None
    target = Target(ek_public=inputs.ek_public, srk_name=srk_name)
    try:
        algorithm = AlgorithmSpec(name=inputs.algorithm, **dict(inputs.params))  # type: ignore[arg-type]
        policy = MidPolicy(
            kind=inputs.policy_kind,  # type: ignore[arg-type]
            selection=inputs.pcr_selection,
            pcr_digest=inputs.pcr_digest,
            slot=inputs.slot,
            k_form=_K_FORMS.get(inputs.algorithm, "symcipher"),
            lifecycle=None
            if inputs.owner_key is None
            else LifecycleBinding.for_key(inputs.owner_key),
        )
        package = build_package(
            target,
            MidSecrets(k=inputs.k, secret=inputs.opc),
            seq=inputs.sequence,
            imsi=inputs.imsi,
            algorithm=algorithm,
            amf=inputs.amf,
            sqn_ms=bytes(6),
            policy=policy,
            owner_key=inputs.owner_key,
        )
    except BadInput as exc:
        raise Refused("package", f"cannot build the MID package: {exc}") from None
    names = {
        "ek": package.ek_name,
        "srk": package.srk_name,
        "parent": package.parent.name,
        "k": package.k.name,
        package.secret_label: package.secret.name,
    }
    return BuiltPackage(
        package=package.wire(),
        names=names,
        policy={
            "kind": inputs.policy_kind,
            "slot": inputs.slot,
            "pcr_selection": inputs.pcr_selection,
            **({} if policy.lifecycle is None else {"lifecycle_ref": policy.lifecycle.ref}),
        },
        mid_id=package.mid_id,
    )
