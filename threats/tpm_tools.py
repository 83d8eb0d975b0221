"""Edge: TPM, sockets. The attacker's TPM tool box: name a TPM response code, load a MID's
objects by hand (to call what the MID store never calls: Unseal, Duplicate, ObjectChangeAuth,
a load under another MID's parent), make a MID without the network (the operator stand-in of
``trelab tpm mid wrap``), change the measured PCR, and tap the TPM's bus.

:class:`BusTap` is a TCP relay between tpm2-tss and swtpm (the command port and the control
port beside it): every byte of every TPM command and response passes through it and is kept,
as a logic analyser on a TPM's SPI/LPC bus would keep it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aka.autn import build_autn
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import join_sqn

if TYPE_CHECKING:
    from tpm.aka import AkaOutcome
    from tpm.connection import TpmConnection
    from tpm.package import Package
    from tpm.registry import MidRecord, Registry, StoredObject

__all__ = [
    "BusTap",
    "LocalMid",
    "MidObjects",
    "change_k_auth",
    "duplicate_with_signed_policy",
    "encrypt_decrypt2_data",
    "extend_pcr",
    "fresh_autn",
    "import_parent",
    "load_mid",
    "load_refusal",
    "local_aka",
    "local_mid",
    "mid_objects",
    "rc_name",
    "reset_pcr",
    "tpm_refusal",
    "unlocked_k",
]


def rc_name(exc: BaseException) -> str:
    """``TPM_RC_POLICY_FAIL`` for a TPM-layer error (format-one parameter/handle/session bits
    masked), else the exception's text: what stopped an attack, as the TPM said it."""
    from tpm.tss import TPM2_RC, TSS2_Exception

    if not isinstance(exc, TSS2_Exception):
        return f"{type(exc).__name__}: {exc}"
    rc = int(exc.rc)
    if rc >> 16:
        return f"TSS layer 0x{rc >> 16:x}: {exc}"
    code = rc & 0xBF if rc & 0x80 else rc & 0xFFF  # format one: drop P and N
    for name in dir(TPM2_RC):
        if name.isupper() and not name.startswith("RC_") and int(getattr(TPM2_RC, name)) == code:
            return f"TPM_RC_{name}"
    return f"TPM_RC 0x{code:03x}"


def tpm_refusal(
    call: Callable[[], Any], cleanup: Callable[[Any], None] | None = None
) -> str | None:
    """Run one TPM command: None if the TPM did it (``cleanup`` gets the result, e.g. flush),
    else the response code it refused with."""
    from tpm.tss import TSS2_Exception

    try:
        result = call()
    except TSS2_Exception as exc:
        return rc_name(exc)
    if cleanup is not None:
        cleanup(result)
    return None


def import_parent(conn: TpmConnection, package: Package) -> str | None:
    """TPM2_Import of a package's MID parent straight under this TPM's EK, none of the MID
    store's host-side checks in front: None if the TPM took it, else its response code."""
    from tpm import tss
    from tpm.ek import ek_policy_session, loaded_ek
    from tpm.tss import TPM2_ALG, TPMT_SYM_DEF_OBJECT

    with loaded_ek(conn) as (ek, ek_public):
        session = ek_policy_session(conn, ek_public)
        try:
            return tpm_refusal(
                lambda: conn.esys.import_(
                    ek,
                    b"",
                    _unmarshal(tss.TPM2B_PUBLIC, package.parent.public),
                    _unmarshal(tss.TPM2B_PRIVATE, package.parent.duplicate),
                    _unmarshal(tss.TPM2B_ENCRYPTED_SECRET, package.parent.seed),
                    TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL),
                    session1=session,
                )
            )
        finally:
            conn.flush(session)


def _unmarshal(kind: type[Any], blob: bytes) -> Any:
    from tpm.tss import unmarshal

    return unmarshal(kind, blob)


class MidObjects:
    """A MID parent loaded by :func:`mid_objects`: call it to load a blob under the parent
    (its policy satisfied); :attr:`parent` is the parent's ESYS handle."""

    def __init__(self, conn: TpmConnection, parent: Any, runner: Any) -> None:
        self.parent = parent
        self._conn = conn
        self._runner = runner
        self.loaded: list[Any] = []

    def __call__(self, stored: StoredObject) -> Any:
        from tpm import tss

        with self._runner.use() as session:
            handle = self._conn.esys.load(
                self.parent,
                _unmarshal(tss.TPM2B_PRIVATE, stored.private),
                _unmarshal(tss.TPM2B_PUBLIC, stored.public),
                session1=session,
            )
        self.loaded.append(handle)
        return handle


@contextlib.contextmanager
def mid_objects(conn: TpmConnection, record: MidRecord) -> Iterator[MidObjects]:
    """Load ``record``'s MID parent (under the EK) and yield a :class:`MidObjects` that loads
    any blob under it, the parent's own policy satisfied. Everything is flushed afterwards."""
    from tpm import tss
    from tpm.ek import ek_policy_session, loaded_ek
    from tpm.mid import ensure_srk, object_name
    from tpm.policy_session import PolicyRunner

    esys = conn.esys
    srk, srk_public = ensure_srk(conn)
    srk_name = object_name(srk_public)
    with loaded_ek(conn) as (ek, ek_public):
        session = ek_policy_session(conn, ek_public)
        try:
            parent = esys.load(
                ek,
                _unmarshal(tss.TPM2B_PRIVATE, record.parent.private),
                _unmarshal(tss.TPM2B_PUBLIC, record.parent.public),
                session1=session,
            )
        finally:
            conn.flush(session)
    objects: MidObjects | None = None
    try:
        with PolicyRunner(
            conn, record.policy.parent_steps(srk_name), handles={srk_name: srk}
        ) as runner:
            objects = MidObjects(conn, parent, runner)
            yield objects
    finally:
        for handle in objects.loaded if objects is not None else []:
            with contextlib.suppress(Exception):
                conn.flush(handle)
        conn.flush(parent)


@dataclass(frozen=True)
class LocalMid:
    """A MID made by the operator stand-in; ``k``/``opc`` are the test oracle (the HSS copy),
    never written anywhere."""

    record: MidRecord
    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)
    pin: bytes | None = field(default=None, repr=False)


def local_mid(
    conn: TpmConnection,
    registry: Registry,
    *,
    kind: str = "use",
    pin: bytes | None = None,
    selection: str = "sha256:0,1,2,3,4,5,6,7",
    active: bool = True,
    operator_key: Any = None,
    imsi: str = "001019990000001",
) -> LocalMid:
    """Wrap a fresh K/OPc to this TPM (``trelab tpm mid wrap``) and import it."""
    from tpm.mid import import_package, wrap_for_device
    from tpm.package import AlgorithmSpec, MidSecrets

    k, opc = os.urandom(16), os.urandom(16)
    package = wrap_for_device(
        conn,
        MidSecrets(k, opc, pin),
        imsi=imsi,
        algorithm=AlgorithmSpec(),
        amf=b"\x80\x00",
        sqn_ms=bytes(6),
        kind=kind,
        selection=selection,
        operator_key=operator_key,
    )
    record = import_package(conn, registry, package, activate=active)
    return LocalMid(record, k, opc, pin)


def fresh_autn(k: bytes, opc: bytes, rand: bytes, seq: int, amf: bytes = b"\x80\x00") -> bytes:
    """An AUTN the HSS would send for SEQ ``seq`` (the network side, K known here)."""
    sqn = join_sqn(seq, 0)
    mac, out = Milenage(SoftwareAes(k), opc).f1_f2345(rand, sqn, amf)
    return build_autn(sqn, out.ak, amf, mac)


def local_aka(
    conn: TpmConnection,
    registry: Registry,
    mid: LocalMid,
    rand: bytes,
    *,
    seq: int = 1,
    pin: bytes | None = None,
    check_state: bool = True,
) -> AkaOutcome:
    """AKA (:func:`tpm.aka.authenticate`) with ``mid`` on the challenge its HSS would send:
    ``rand`` and the AUTN for SEQ ``seq``.

    Raises:
        tpm.mid_errors.MidRefused: the TPM or the MID store refused (PinRejected, …).
    """
    from tpm.aka import authenticate

    autn = fresh_autn(mid.k, mid.opc, rand, seq)
    return authenticate(
        conn, registry, mid.record.mid, rand, autn, pin=pin, check_state=check_state
    )


def load_mid(conn: TpmConnection, record: MidRecord, *, use_k: bool = False) -> None:
    """Load ``record`` through the MID store (:class:`tpm.mid.LoadedMid`, its policies
    satisfied); ``use_k`` also encrypts one block with K.

    Raises:
        tpm.mid_errors.MidRefused: the MID store or the TPM refused.
    """
    from tpm.mid import LoadedMid

    with LoadedMid(conn, record) as loaded:
        if use_k:
            loaded.holder.encrypt_blocks(bytes(16))


def load_refusal(
    conn: TpmConnection, record: MidRecord, stored: StoredObject | None = None
) -> str | None:
    """Load ``record``'s MID parent by hand, then ``stored`` (K by default) under it: None if
    the TPM took both, else the response code it refused with."""

    def load() -> None:
        with mid_objects(conn, record) as objects:
            objects(record.k if stored is None else stored)

    return tpm_refusal(load)


def change_k_auth(conn: TpmConnection, mid: LocalMid, new_auth: bytes) -> str | None:
    """TPM2_ObjectChangeAuth of ``mid``'s K (under its parent, K's PIN given if it has one)
    to ``new_auth``: None if the TPM changed it, else its response code."""
    from tpm.tss import ESYS_TR

    with mid_objects(conn, mid.record) as objects:
        key = objects(mid.record.k)
        if mid.pin is not None:
            conn.esys.tr_set_auth(key, mid.pin)
        return tpm_refusal(
            lambda: conn.esys.object_change_auth(
                key, objects.parent, new_auth, session1=ESYS_TR.PASSWORD
            )
        )


def extend_pcr(conn: TpmConnection, index: int, measurement: bytes) -> None:
    """TPM2_PCR_Extend(index, SHA-256 measurement): a changed component was measured."""
    from tpm.tss import ESYS_TR, TPM2_ALG, TPML_DIGEST_VALUES, TPMT_HA

    digest = TPMT_HA(hashAlg=TPM2_ALG.SHA256)
    digest.digest.sha256 = measurement
    conn.esys.pcr_extend(getattr(ESYS_TR, f"PCR{index}"), TPML_DIGEST_VALUES([digest]))


def reset_pcr(conn: TpmConnection, index: int) -> None:
    """TPM2_PCR_Reset (PCR 16 and 23 are resettable from locality 0)."""
    from tpm.tss import ESYS_TR

    conn.esys.pcr_reset(getattr(ESYS_TR, f"PCR{index}"))


def _frames(stream: bytes) -> list[bytes]:
    out = []
    offset = 0
    while offset + 10 <= len(stream):
        size = int.from_bytes(stream[offset + 2 : offset + 6], "big")
        if size < 10:
            break
        out.append(stream[offset : offset + size])
        offset += size
    return out


TPM_CC_ENCRYPT_DECRYPT2 = 0x193


def encrypt_decrypt2_data(command: bytes, response: bytes) -> tuple[bytes, bytes] | None:
    """(inData, outData) of a TPM2_EncryptDecrypt2 exchange read off the bus, or None for any
    other command: what a logic analyser on the TPM bus decodes with the spec in hand (Part 3
    §15.3: one handle, the authorisation area, then inData first; the response's outData
    first). Parameter encryption would leave only ciphertext here."""
    if len(command) < 14 or int.from_bytes(command[6:10], "big") != TPM_CC_ENCRYPT_DECRYPT2:
        return None
    if int.from_bytes(response[6:10], "big") != 0:  # refused: no outData
        return None
    offset = 14  # header + keyHandle
    if int.from_bytes(command[0:2], "big") == 0x8002:  # TPM_ST_SESSIONS
        offset += 4 + int.from_bytes(command[14:18], "big")
    size = int.from_bytes(command[offset : offset + 2], "big")
    in_data = command[offset + 2 : offset + 2 + size]
    roffset = 10 + (4 if int.from_bytes(response[0:2], "big") == 0x8002 else 0)
    rsize = int.from_bytes(response[roffset : roffset + 2], "big")
    return in_data, response[roffset + 2 : roffset + 2 + rsize]


class BusTap:
    """A relay on ``127.0.0.1`` in front of a swtpm at ``port`` (and its control port + 1):
    point tpm2-tss at :attr:`tcti` and read :meth:`captured` (the command port's bytes, both
    directions). Threads are daemons; :meth:`close` stops accepting and closes every socket."""

    def __init__(self, port: int) -> None:
        from lab.swtpm import find_free_port_pair

        self.local = find_free_port_pair()
        self._lock = threading.Lock()
        self._data = bytearray()
        self._streams = (bytearray(), bytearray())  # to the TPM, from the TPM
        self._sockets: list[socket.socket] = []
        self._closed = False
        for offset in (0, 1):
            server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind(("127.0.0.1", self.local + offset))
            server.listen(4)
            self._sockets.append(server)
            thread = threading.Thread(
                target=self._accept, args=(server, port + offset, offset == 0), daemon=True
            )
            thread.start()

    @property
    def tcti(self) -> str:
        return f"swtpm:host=127.0.0.1,port={self.local}"

    def captured(self) -> bytes:
        """Every byte of the command port, both directions, in arrival order."""
        with self._lock:
            return bytes(self._data)

    def exchanges(self) -> list[tuple[bytes, bytes]]:
        """(command, response) pairs as the TPM saw them: each stream cut at the size field of
        the TPM header (Part 1 §18: tag u16, size u32, code u32)."""
        with self._lock:
            commands, responses = (bytes(s) for s in self._streams)
        return list(zip(_frames(commands), _frames(responses), strict=False))

    def _accept(self, server: socket.socket, port: int, record: bool) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    return
                self._sockets += [client, upstream]
            for a, b, way in ((client, upstream, 0), (upstream, client, 1)):
                threading.Thread(
                    target=self._pump, args=(a, b, way if record else None), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, record: int | None) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if record is not None:
                with self._lock:
                    self._data += data
                    self._streams[record].extend(data)
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> BusTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def duplicate_with_signed_policy(
    conn: TpmConnection, key: Any, operator_key: Any, *, lock: bool
) -> Any:
    """The PolicyAuthorize trap (docs/tpm.md): the holder of the operator's policy-signing key signs
    the policy PolicyCommandCode(Duplicate) and uses it to export ``key`` in clear (new parent
    TPM_RH_NULL, no inner wrapper). ``lock`` appends PolicyCommandCode(EncryptDecrypt2) as a
    K of the ``authorize`` kind requires. Returns TPM2_Duplicate's result.

    Raises:
        tpm.tss.TSS2_Exception: the TPM refused.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    from tpm.mid import object_name
    from tpm.package import operator_public
    from tpm.policy import (
        CC_DUPLICATE,
        CC_ENCRYPT_DECRYPT2,
        PolicyCommandCode,
        approval_hash,
        policy_digest,
    )
    from tpm.policy_session import _signature, start_session
    from tpm.tss import ESYS_TR, TPM2_ALG, TPM2B_PUBLIC, TPMT_SYM_DEF_OBJECT

    esys = conn.esys
    approved = policy_digest([PolicyCommandCode(CC_DUPLICATE)])
    signature = operator_key.sign(
        approval_hash(approved), ec.ECDSA(utils.Prehashed(hashes.SHA256()))
    )
    op_public = TPM2B_PUBLIC.unmarshal(operator_public(operator_key))[0]
    session = start_session(conn)
    try:
        esys.policy_command_code(session, CC_DUPLICATE)
        external = esys.load_external(op_public, None, ESYS_TR.OWNER)
        try:
            ticket = esys.verify_signature(external, approval_hash(approved), _signature(signature))
        finally:
            conn.flush(external)
        esys.policy_authorize(session, approved, object_name(op_public), ticket)
        if lock:
            esys.policy_command_code(session, CC_ENCRYPT_DECRYPT2)
        return esys.duplicate(
            key, ESYS_TR.NULL, b"", TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL), session1=session
        )
    finally:
        conn.flush(session)


@contextlib.contextmanager
def unlocked_k(conn: TpmConnection, operator_key: Any, k: bytes) -> Iterator[Any]:
    """The control for the trap: a K whose policy is PolicyAuthorize(operator key) *without*
    the trailing PolicyCommandCode(EncryptDecrypt2), imported under the EK and loaded."""
    from tpm.ek import ek_policy_session, loaded_ek
    from tpm.mid import object_name
    from tpm.package import operator_public
    from tpm.policy import PolicyAuthorize, policy_digest
    from tpm.tss import (
        TPM2_ALG,
        TPM2B_PUBLIC,
        TPM2B_SENSITIVE,
        TPMA_OBJECT,
        TPMT_SYM_DEF_OBJECT,
        wrap,
    )

    op_name = object_name(TPM2B_PUBLIC.unmarshal(operator_public(operator_key))[0])
    sensitive, public = TPM2B_SENSITIVE.symcipher_from_secret(
        k,
        mode=TPM2_ALG.NULL,
        objectAttributes=TPMA_OBJECT.DECRYPT
        | TPMA_OBJECT.SIGN_ENCRYPT
        | TPMA_OBJECT.ADMINWITHPOLICY
        | TPMA_OBJECT.NODA,
    )
    public.publicArea.authPolicy = policy_digest([PolicyAuthorize(op_name)])
    no_inner = TPMT_SYM_DEF_OBJECT(algorithm=TPM2_ALG.NULL)
    with loaded_ek(conn) as (ek, ek_public):
        _, duplicate, seed = wrap(ek_public.publicArea, public, sensitive)
        session = ek_policy_session(conn, ek_public)
        try:
            private = conn.esys.import_(
                ek, b"", public, duplicate, seed, no_inner, session1=session
            )
        finally:
            conn.flush(session)
        session = ek_policy_session(conn, ek_public)
        try:
            handle = conn.esys.load(ek, private, public, session1=session)
        finally:
            conn.flush(session)
    try:
        yield handle
    finally:
        conn.flush(handle)
