"""Edge: TPM. TPM2_Quote on the lean layer (:mod:`tpm.lean`), marshalled once per AK and PCR
selection (:class:`PreparedQuote`), so a steady-state quote is the nonce put into bytes that are
otherwise fixed and one response split by offsets. The quote path's AK look-up
(TPM2_ReadPublic) and PCR reads (TPM2_PCR_Read) are :mod:`tpm.lean_commands`'.

None of these commands takes an HMAC session: the AK's authValue is empty and goes as a
password, PCR_Read and ReadPublic need no authorisation. Nothing here is trusted by the
verifier: what the TPM returns is checked by :mod:`tpm.verify` against the signature.
"""

from __future__ import annotations

import struct

from tpm import lean
from tpm.connection import TpmConnection
from tpm.lean import CC, TpmRefused
from tpm.lean_commands import execute
from trelab.errors import BadInput, RemoteProtocolError

__all__ = ["PreparedQuote", "unwrap_quote"]

_HEADER = struct.Struct(">HII")
_PASSWORD_AREA = struct.Struct(">IIH")  # authorizationSize, sessionHandle, nonceCaller size
_PARAM_SIZE = struct.Struct(">I")


class PreparedQuote:
    """TPM2_Quote (Part 3 §18.4) by one AK over one PCR selection, with the AK's own scheme
    (inScheme TPM_ALG_NULL) and its authValue as password: everything but the nonce is
    marshalled once, here.

    Command: header, the AK's handle, one password authorisation (TPM_RS_PW, empty nonce,
    continueSession, the authValue), then qualifyingData (the nonce), inScheme, PCRselect.
    """

    __slots__ = ("_head", "_tail", "handle", "selection")

    def __init__(self, handle: int, selection: bytes, auth_value: bytes = b"") -> None:
        self.handle = handle
        #: the marshalled TPML_PCR_SELECTION quoted
        self.selection = selection
        area = struct.pack(">IHB", lean.PASSWORD_SESSION, 0, lean.CONTINUE) + lean.tpm2b(auth_value)
        #: after the header: the AK's handle and the authorisation area
        self._head = struct.pack(">I", handle) + struct.pack(">I", len(area)) + area
        #: after the nonce: inScheme, PCRselect
        self._tail = struct.pack(">H", lean.ALG_NULL) + selection

    def command(self, nonce: bytes) -> bytes:
        """The command bytes quoting over ``nonce`` (1..64 bytes: the caller checks).

        Raises:
            BadInput: a nonce that no TPM2B_DATA holds.
        """
        if len(nonce) > 0xFFFF:
            raise BadInput(f"TPM2B of {len(nonce)} bytes")
        size = 10 + len(self._head) + 2 + len(nonce) + len(self._tail)
        return b"".join(
            (
                _HEADER.pack(lean.ST_SESSIONS, size, CC.QUOTE),
                self._head,
                len(nonce).to_bytes(2, "big"),
                nonce,
                self._tail,
            )
        )

    def run(self, conn: TpmConnection, nonce: bytes) -> tuple[bytes, bytes]:
        """One TPM2_Quote over ``nonce``: (the TPMS_ATTEST as signed, the marshalled
        TPMT_SIGNATURE); checking them is the verifier's job.

        Raises:
            TpmRefused: the TPM refuses (the caller maps parameter errors).
            RemoteProtocolError: the response is malformed.
        """
        return unwrap_quote(execute(conn, self.command(nonce)))


def unwrap_quote(response: bytes) -> tuple[bytes, bytes]:
    """(quoted, signature) of a TPM2_Quote response to a command with one password
    authorisation: the header, the parameter size and the one response authorisation area
    are each held to the response's length, as :meth:`tpm.lean.Pending.unwrap` does.

    Raises:
        TpmRefused: a response code other than success.
        RemoteProtocolError: malformed.
    """
    if len(response) < 10:
        raise RemoteProtocolError(f"TPM response of {len(response)} bytes")
    tag, size, rc = _HEADER.unpack_from(response)
    if size != len(response):
        raise RemoteProtocolError(f"TPM response says {size} bytes, has {len(response)}")
    if rc != lean.RC_SUCCESS:
        raise TpmRefused(CC.QUOTE, rc)
    if tag != lean.ST_SESSIONS:
        raise RemoteProtocolError(f"TPM response tag 0x{tag:04x} to a command with sessions")
    if size < 14:
        raise RemoteProtocolError("TPM response ends before its parameter size")
    (param_size,) = _PARAM_SIZE.unpack_from(response, 10)
    end = 14 + param_size
    # the password session's response area: nonceTPM (TPM2B), attributes, hmac (TPM2B)
    if end + 2 > size:
        raise RemoteProtocolError("TPM response parameters overrun the response")
    nonce_end = end + 2 + int.from_bytes(response[end : end + 2], "big")
    if nonce_end + 3 > size:
        raise RemoteProtocolError("TPM response ends inside an auth area")
    hmac_end = nonce_end + 3 + int.from_bytes(response[nonce_end + 1 : nonce_end + 3], "big")
    if hmac_end != size:
        raise RemoteProtocolError("TPM response auth area does not end with the response")
    if param_size < 2:
        raise RemoteProtocolError("Quote response without its attestation")
    quoted_end = 16 + int.from_bytes(response[14:16], "big")
    if quoted_end > end:
        raise RemoteProtocolError("TPM response ends inside a TPM2B")
    if end - quoted_end < 4:  # sigAlg, then the scheme's hash: every signature has both
        raise RemoteProtocolError("Quote response without a signature")
    return response[16:quoted_end], response[quoted_end:end]
