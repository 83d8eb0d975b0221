"""Edge: TPM. TPM2_Quote with the AK over a PCR selection and a verifier's nonce (TPM 2.0
Part 3 §18.4; docs/provisioning.md M4), returned as tpm2-tools evidence (:mod:`tpm.evidence`).

The PCR values sent alongside are checked against the signed pcrDigest before they leave
(read with TPM2_PCR_Read when not cached or stale), so the evidence is always consistent.
Nothing transient is created (the AK is persistent). TPM2_Quote, TPM2_ReadPublic (the AK
looked up) and TPM2_PCR_Read go through the lean layer (:mod:`tpm.lean_quote`,
:mod:`tpm.lean_commands`: password authorisation, the command marshalled once per selection, the response split by offsets);
``Quoter(layer="esys")`` sends them through ESYS, the labelled reference.
"""

from __future__ import annotations

import contextlib
import hmac
from typing import Any, Literal

from tpm import lean_commands, lean_quote
from tpm.connection import TpmConnection
from tpm.evidence import QuoteFiles
from tpm.identity import AttestationKey
from tpm.lean import TpmRefused
from tpm.marshal import hash_name, parse_attest, selection_from_tpml, tpml_from_selection
from tpm.pcrsel import PcrSelection, normalise, values_digest
from tpm.tss import TPM2B_DATA, TSS2_Exception
from trelab.errors import BadInput, RemoteProtocolError, Unavailable

__all__ = ["MAX_NONCE", "Quoter", "quote", "read_pcrs"]

MAX_NONCE = 64  # TPM2B_DATA holds at most sizeof(TPMT_HA); 32 fits every TPM
_ATTEMPTS = 3


def _parameter_error(rc: int) -> bool:
    """A TPM-layer format-one response code naming a command parameter (Part 2 §6.6.3):
    the caller's input was wrong, not the TPM."""
    return rc >> 16 == 0 and bool(rc & 0x80) and bool(rc & 0x40)


def read_pcrs(
    conn: TpmConnection, selection: PcrSelection, *, layer: Literal["lean", "esys"] = "lean"
) -> bytes:
    """PCR values concatenated in selection order. TPM2_PCR_Read returns at most 8 digests
    per call; the reads are repeated for the rest and restarted if pcrUpdateCounter moved.
    ``layer`` says which client stack sends it (:mod:`tpm.lean_quote` or ESYS).

    Raises:
        Unavailable: the TPM refuses, or PCRs keep changing.
        BadInput: the TPM does not have a selected PCR or bank.
    """
    wanted = [(bank, i) for bank, pcrs in selection for i in pcrs]
    for _ in range(_ATTEMPTS):
        got: dict[tuple[str, int], bytes] = {}
        counter: int | None = None
        while len(got) < len(wanted):
            rest: dict[str, list[int]] = {}
            for bank, i in wanted:
                if (bank, i) not in got:
                    rest.setdefault(bank, []).append(i)
            update, returned, digests = _pcr_read(
                conn, tuple((b, tuple(p)) for b, p in rest.items()), layer
            )
            if counter is not None and update != counter:
                break
            counter = update
            keys = [(b, i) for b, pcrs in returned for i in pcrs]
            if not keys:
                missing = ", ".join(f"{b}:{','.join(map(str, p))}" for b, p in rest.items())
                raise BadInput(f"the TPM has no PCR {missing} (see trelab tpm info)")
            for key, digest in zip(keys, digests, strict=True):
                got[key] = digest
        else:
            return b"".join(got[key] for key in wanted)
    raise Unavailable("PCRs keep changing while being read")


def _pcr_read(
    conn: TpmConnection, selection: PcrSelection, layer: Literal["lean", "esys"]
) -> tuple[int, PcrSelection, list[bytes]]:
    """One TPM2_PCR_Read: (pcrUpdateCounter, the selection read, its digests in order)."""
    tpml = tpml_from_selection(selection)
    try:
        if layer == "lean":
            return lean_commands.pcr_read_selected(conn, bytes(tpml.marshal()))
        update, out_sel, digests = conn.esys.pcr_read(tpml)
    except TpmRefused as exc:
        raise Unavailable(f"TPM2_PCR_Read failed on {conn.tcti}: {exc}") from None
    except RemoteProtocolError as exc:
        raise Unavailable(f"TPM2_PCR_Read on {conn.tcti}: {exc}") from None
    except TSS2_Exception as exc:
        raise Unavailable(f"TPM2_PCR_Read failed on {conn.tcti}: {exc}") from None
    return int(update), selection_from_tpml(out_sel), [bytes(d) for d in digests]


class _Prepared:
    """One PCR selection as a Quoter sends it: normalised, its TPM2_Quote marshalled (lean)
    or its TPML_PCR_SELECTION built (ESYS), and the PCR values last read for it with the
    end of a quote that signs exactly those values."""

    __slots__ = ("_ending", "command", "selection", "tpml", "values")

    def __init__(self, selection: PcrSelection, handle: int) -> None:
        self.selection = selection
        self.tpml = tpml_from_selection(selection)
        self.command = lean_quote.PreparedQuote(handle, bytes(self.tpml.marshal()))
        self.values: bytes | None = None
        self._ending: tuple[bytes, bytes] = (b"", b"")  # (signature hash field, ending)

    def signed_values(self, message: bytes, signature: bytes) -> bytes | None:
        """:attr:`values` if the quote ``message`` (signed with ``signature``'s hash) ends
        with this selection and their hash: TPMS_QUOTE_INFO is the last field of a quote's
        TPMS_ATTEST, so such a quote signs exactly these values; else None. A consistency
        check of what is sent, not a verification (that is :mod:`tpm.verify`'s)."""
        if self.values is None:
            return None
        hash_field = signature[2:4]  # TPMT_SIGNATURE: sigAlg, then the scheme's hash
        if self._ending[0] != hash_field:
            digest = values_digest(hash_name(int.from_bytes(hash_field, "big")), self.values)
            ending = self.command.selection + len(digest).to_bytes(2, "big") + digest
            self._ending = (hash_field, ending)
        return self.values if message.endswith(self._ending[1]) else None

    def remember(self, values: bytes) -> None:
        """PCR values read for this selection."""
        self.values = values
        self._ending = (b"", b"")


class Quoter:
    """Quotes with one AK on one connection, repeatedly. Entering it checks that the AK's
    handle holds the AK (its name); then it keeps, for the Quoter's life, each selection's
    marshalled command and the last PCR values per selection. After each TPM2_Quote the
    signed structure must end with the selection and the hash of the cached values (the
    *signed* pcrDigest); only if it does not
    (a PCR was extended) are the PCRs read again — so a steady-state quote is one TPM
    command, and the values sent are always the ones the TPM signed (a mismatch after a
    fresh read means a PCR moved between Quote and PCR_Read: quote again)."""

    def __init__(
        self, conn: TpmConnection, ak: AttestationKey, *, layer: Literal["lean", "esys"] = "lean"
    ) -> None:
        self.conn = conn
        self.ak = ak
        #: which client stack sends TPM2_Quote, TPM2_ReadPublic and TPM2_PCR_Read: the lean
        #: layer (password authorisation, nothing to compute) or ESYS
        #: (the labelled reference)
        self.layer = layer
        self._open = False
        self._handle: Any = None
        self._prepared: dict[PcrSelection, _Prepared] = {}

    def __enter__(self) -> Quoter:
        handle = self.ak.handle
        if self.layer == "esys":
            try:
                self._handle = self.conn.esys.tr_from_tpmpublic(handle)
            except TSS2_Exception as exc:
                raise Unavailable(f"AK 0x{handle:08x} is gone: {exc}") from None
        else:
            try:
                _, name = lean_commands.read_public(self.conn, handle)
            except (TpmRefused, RemoteProtocolError) as exc:
                raise Unavailable(f"AK 0x{handle:08x} is gone: {exc}") from None
            if not hmac.compare_digest(name, self.ak.name):
                raise Unavailable(f"0x{handle:08x} holds another key than this AK")
        self._open = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._open = False
        if self._handle is not None:
            with contextlib.suppress(TSS2_Exception):
                self.conn.esys.tr_close(self._handle)
            self._handle = None

    @property
    def handle(self) -> Any:
        """The AK's ESYS handle (for raw ESYS comparisons in benchmarks); on the lean layer
        opened on first use, since quoting needs none. Closed with the Quoter.

        Raises:
            Unavailable: outside the with-block, or the AK is gone.
        """
        if not self._open:
            raise Unavailable("Quoter used outside its with-block")
        if self._handle is None:
            try:
                self._handle = self.conn.esys.tr_from_tpmpublic(self.ak.handle)
            except TSS2_Exception as exc:
                raise Unavailable(f"AK 0x{self.ak.handle:08x} is gone: {exc}") from None
        return self._handle

    def quote(self, nonce: bytes, selection: PcrSelection) -> QuoteFiles:
        """One quote of ``selection`` over ``nonce``, with the matching PCR values.

        Raises:
            BadInput: nonce empty or too long; empty selection.
            Unavailable: the TPM refuses, or PCRs keep changing.
        """
        if not self._open:
            raise Unavailable("Quoter used outside its with-block")
        if not 0 < len(nonce) <= MAX_NONCE:
            raise BadInput(f"{len(nonce)} bytes, expected 1..{MAX_NONCE}", field="nonce")
        prepared = self._prepared.get(selection)
        if prepared is None:
            normal = normalise(selection)
            if not normal:
                raise BadInput("no PCR selected", field="pcrs")
            prepared = self._prepared[selection] = _Prepared(normal, self.ak.handle)
        for _ in range(_ATTEMPTS):
            message, signature = self._quote(nonce, prepared)
            values = prepared.signed_values(message, signature)
            if values is None:
                parse_attest(message)  # a malformed quote is refused, not taken for moved PCRs
                prepared.remember(read_pcrs(self.conn, prepared.selection, layer=self.layer))
                values = prepared.signed_values(message, signature)
                if values is None:
                    continue
            return QuoteFiles(
                message=message,
                signature=signature,
                ak_pem=self.ak.public_pem,
                pcrs=values,
                selection=prepared.selection,
                ak_blob=self.ak.public_blob,
                nonce=nonce,
            )
        raise Unavailable("PCRs keep changing between TPM2_Quote and TPM2_PCR_Read")

    def _quote(self, nonce: bytes, prepared: _Prepared) -> tuple[bytes, bytes]:
        """(TPMS_ATTEST, marshalled TPMT_SIGNATURE) of one TPM2_Quote on :attr:`layer`."""
        try:
            if self.layer == "lean":
                return prepared.command.run(self.conn, nonce)
            attest, signature = self.conn.esys.quote(self._handle, prepared.tpml, TPM2B_DATA(nonce))
            return bytes(attest), bytes(signature.marshal())
        except TpmRefused as exc:
            rc, text = exc.rc, str(exc)
        except TSS2_Exception as exc:
            rc, text = int(exc.rc), str(exc)
        if _parameter_error(rc):
            raise BadInput(
                f"the TPM refused the quote parameters ({text}): check --pcrs against"
                " `trelab tpm info` and the --nonce length"
            )
        raise Unavailable(f"TPM2_Quote failed on {self.conn.tcti}: {text}")


def quote(
    conn: TpmConnection, ak: AttestationKey, nonce: bytes, selection: PcrSelection
) -> QuoteFiles:
    """One quote of ``selection`` with ``ak`` over ``nonce`` and the PCR values it covers
    (a one-shot :class:`Quoter`).

    Raises:
        BadInput: nonce empty or too long; empty selection.
        Unavailable: the TPM refuses, or PCRs keep changing.
    """
    with Quoter(conn, ak) as quoter:
        return quoter.quote(nonce, selection)
