"""Edge: TPM, TCP. The TPM access layer: how trelab reaches a TPM, below ESYS and beside it.

Every command to a TPM — sent by ESYS (tpm2-pytss) or by the lean session layer
(:mod:`tpm.lean`) — goes through one :class:`Transport` per connection:

- ``swtpm:host=H,port=P`` → :class:`SwtpmTransport`, trelab's own client of swtpm's server
  port (raw TPM command and response frames, as tpm2-tss's swtpm TCTI sends them; the
  response's own size field delimits it). Like that TCTI it connects per command, so other
  clients of the same swtpm get their turn; inside :meth:`Transport.kept` it keeps one socket
  (swtpm serves one connection at a time: keep it only around a burst of commands).
- anything else (``device:/dev/tpmrm0``, ``tabrmd:``, ``mssim:``) → :class:`TctiTransport`,
  the ESAPI's TCTI loaded by tpm2-tss, used to send the layer's bytes too.

ESYS sees the transport as a Python TCTI (:class:`_EsysTcti`), so one observer hook
(:meth:`Transport.observe`) sees every command with its code and the time inside the
transport: bench timing and crash injection hook here, not into ESYS objects.

:class:`TpmFacts` is what a connection knows about its TPM for its life (NV indices defined,
their ESYS objects, the EK), typed, instead of a dict of ad-hoc keys.
"""

from __future__ import annotations

import contextlib
import keyword
import os
import re
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar, cast

# ESYS prints its own error lines on stderr when the TPM refuses a command; trelab reports
# every refusal itself in one line, so silence the library unless the user asked for its logs.
os.environ.setdefault("TSS2_LOG", "all+NONE")

# The one place trelab imports tpm2-pytss (enforced by the `tss-single-importer` contract in
# pyproject.toml): the ESAPI, its TCTI loader and error, the marshalling types and constants
# trelab builds commands from, and the few helpers it uses, re-exported under their own names.
# mypy follows tpm2-pytss' own annotations, so these are real types, not Any.
from tpm2_pytss._libtpm2_pytss import ffi, lib
from tpm2_pytss.constants import (
    ESYS_TR,
    TPM2_ALG,
    TPM2_CAP,
    TPM2_CC,
    TPM2_ECC,
    TPM2_HT,
    TPM2_NT,
    TPM2_PT,
    TPM2_RC,
    TPM2_SE,
    TPM2_ST,
    TPMA_NV,
    TPMA_OBJECT,
    TPMA_PERMANENT,
    TPMA_SESSION,
)
from tpm2_pytss.ESAPI import ESAPI
from tpm2_pytss.internal.templates import ek_template
from tpm2_pytss.TCTI import PyTCTI
from tpm2_pytss.TCTILdr import TCTILdr
from tpm2_pytss.TSS2_Exception import TSS2_Exception
from tpm2_pytss.types import (
    TPM2B_ATTEST,
    TPM2B_AUTH,
    TPM2B_CREATION_DATA,
    TPM2B_DATA,
    TPM2B_DIGEST,
    TPM2B_ECC_POINT,
    TPM2B_ENCRYPTED_SECRET,
    TPM2B_ID_OBJECT,
    TPM2B_IV,
    TPM2B_MAX_BUFFER,
    TPM2B_MAX_NV_BUFFER,
    TPM2B_NAME,
    TPM2B_NONCE,
    TPM2B_NV_PUBLIC,
    TPM2B_OPERAND,
    TPM2B_PRIVATE,
    TPM2B_PUBLIC,
    TPM2B_SENSITIVE,
    TPM2B_SENSITIVE_CREATE,
    TPM2B_SENSITIVE_DATA,
    TPM2B_TIMEOUT,
    TPML_DIGEST,
    TPML_DIGEST_VALUES,
    TPML_PCR_SELECTION,
    TPMS_ATTEST,
    TPMS_AUTH_COMMAND,
    TPMS_AUTH_RESPONSE,
    TPMS_CAPABILITY_DATA,
    TPMS_ECC_PARMS,
    TPMS_ECC_POINT,
    TPMS_NV_PUBLIC,
    TPMS_PCR_SELECTION,
    TPMS_RSA_PARMS,
    TPMS_SCHEME_HASH,
    TPMS_SYMCIPHER_PARMS,
    TPMS_TIME_INFO,
    TPMT_ASYM_SCHEME,
    TPMT_ECC_SCHEME,
    TPMT_HA,
    TPMT_KDF_SCHEME,
    TPMT_KEYEDHASH_SCHEME,
    TPMT_PUBLIC,
    TPMT_PUBLIC_PARMS,
    TPMT_RSA_SCHEME,
    TPMT_SIG_SCHEME,
    TPMT_SIGNATURE,
    TPMT_SYM_DEF,
    TPMT_SYM_DEF_OBJECT,
    TPMT_TK_AUTH,
    TPMT_TK_CREATION,
    TPMT_TK_VERIFIED,
    TPMU_ASYM_SCHEME,
    TPMU_PUBLIC_ID,
    TPMU_PUBLIC_PARMS,
    TPMU_SYM_KEY_BITS,
    TPMU_SYM_MODE,
)
from tpm2_pytss.utils import NoSuchIndex, create_ek_template, make_credential, wrap

from trelab.errors import BadInput, Unavailable

__all__ = [
    "ESAPI",
    "ESYS_TR",
    "TPM2B_DATA",
    "TPM2B_ENCRYPTED_SECRET",
    "TPM2B_ID_OBJECT",
    "TPM2B_IV",
    "TPM2B_MAX_BUFFER",
    "TPM2B_MAX_NV_BUFFER",
    "TPM2B_NAME",
    "TPM2B_NONCE",
    "TPM2B_NV_PUBLIC",
    "TPM2B_OPERAND",
    "TPM2B_PRIVATE",
    "TPM2B_PUBLIC",
    "TPM2B_SENSITIVE",
    "TPM2B_SENSITIVE_CREATE",
    "TPM2_ALG",
    "TPM2_CAP",
    "TPM2_CC",
    "TPM2_ECC",
    "TPM2_HT",
    "TPM2_NT",
    "TPM2_PT",
    "TPM2_RC",
    "TPM2_SE",
    "TPM2_ST",
    "TPMA_NV",
    "TPMA_OBJECT",
    "TPMA_PERMANENT",
    "TPMA_SESSION",
    "TPML_DIGEST",
    "TPML_DIGEST_VALUES",
    "TPML_PCR_SELECTION",
    "TPMS_ATTEST",
    "TPMS_AUTH_COMMAND",
    "TPMS_AUTH_RESPONSE",
    "TPMS_ECC_PARMS",
    "TPMS_ECC_POINT",
    "TPMS_NV_PUBLIC",
    "TPMS_PCR_SELECTION",
    "TPMS_RSA_PARMS",
    "TPMS_SCHEME_HASH",
    "TPMS_SYMCIPHER_PARMS",
    "TPMT_ASYM_SCHEME",
    "TPMT_ECC_SCHEME",
    "TPMT_HA",
    "TPMT_KDF_SCHEME",
    "TPMT_KEYEDHASH_SCHEME",
    "TPMT_PUBLIC",
    "TPMT_PUBLIC_PARMS",
    "TPMT_RSA_SCHEME",
    "TPMT_SIGNATURE",
    "TPMT_SIG_SCHEME",
    "TPMT_SYM_DEF",
    "TPMT_SYM_DEF_OBJECT",
    "TPMU_ASYM_SCHEME",
    "TPMU_PUBLIC_ID",
    "TPMU_PUBLIC_PARMS",
    "TPMU_SYM_KEY_BITS",
    "TPMU_SYM_MODE",
    "CommandEvent",
    "CommandObserver",
    "Esys",
    "InterruptibleEsys",
    "NoSuchIndex",
    "SwtpmTransport",
    "TCTILdr",
    "TSS2_Exception",
    "TctiTransport",
    "TpmFacts",
    "Transport",
    "command_name",
    "create_ek_template",
    "ek_template",
    "ffi",
    "lib",
    "make_credential",
    "open_esys",
    "open_transport",
    "swapped_esys_library",
    "unmarshal",
    "wrap",
]

_Marshalled = TypeVar("_Marshalled")

#: How long a response may take before the transport gives up (a stuck swtpm, or another
#: client holding swtpm's one connection).
RESPONSE_TIMEOUT = 120.0


def _snake(name: str) -> str:
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return text + "_" if keyword.iskeyword(text) else text


def _command_names() -> dict[int, str]:
    names: dict[int, str] = {}
    for attr, value in vars(TPM2_CC).items():
        if attr.startswith("_") or not isinstance(value, int) or attr in ("FIRST", "LAST"):
            continue
        names.setdefault(int(value), _snake(attr))
    return names


_NAMES = _command_names()


def command_name(code: int) -> str:
    """The ESAPI-style name of a command code: 0x134 → ``nv_increment``, 0x156 → ``import_``."""
    return _NAMES.get(code, f"cc_{code:x}")


class CommandEvent(NamedTuple):
    """One command as the transport saw it: code, ESAPI-style name, seconds between the
    first byte sent and the last byte received, and the response code (a tuple: made after
    every command while a benchmark observes)."""

    code: int
    name: str
    seconds: float
    rc: int


CommandObserver = Callable[[CommandEvent], None]


class Transport:
    """Moves one command's bytes to the TPM and its response back; observers run after each."""

    def __init__(self) -> None:
        self._observers: list[CommandObserver] = []
        self.commands = 0

    def _exchange(self, command: bytes) -> bytes:
        raise NotImplementedError

    def execute(self, command: bytes) -> bytes:
        """Send one marshalled command, return its marshalled response.

        Raises:
            Unavailable: the TPM cannot be reached or closed the connection.
        """
        if len(command) < 10:
            raise BadInput(f"TPM command of {len(command)} bytes")
        start = time.perf_counter()
        response = self._exchange(command)
        elapsed = time.perf_counter() - start
        self.commands += 1
        if self._observers:
            (code,) = struct.unpack_from(">I", command, 6)
            rc = struct.unpack_from(">I", response, 6)[0] if len(response) >= 10 else -1
            event = CommandEvent(code, command_name(code), elapsed, rc)
            for observer in tuple(self._observers):
                observer(event)
        return response

    @contextlib.contextmanager
    def observe(self, observer: CommandObserver) -> Iterator[None]:
        """Call ``observer`` after every command inside the block."""
        self._observers.append(observer)
        try:
            yield
        finally:
            self._observers.remove(observer)

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        """Keep the connection to the TPM open inside the block where the transport can."""
        yield

    def close(self) -> None:
        """Release the transport (idempotent)."""


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("swtpm closed the connection")
        data += chunk
    return bytes(data)


class SwtpmTransport(Transport):
    """swtpm's server port, one TCP connection per command unless :meth:`kept`."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__()
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._keep = 0
        # fail early and clearly when nothing listens (as the swtpm TCTI does)
        self._close_socket(self._connect())

    def _connect(self) -> socket.socket:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=RESPONSE_TIMEOUT)
        except OSError as exc:
            raise Unavailable(
                f"cannot reach swtpm at {self.host}:{self.port}: {exc.strerror or exc}",
                fix="trelab lab up",
            ) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _close_socket(self, sock: socket.socket) -> None:
        sock.close()

    def _exchange(self, command: bytes) -> bytes:
        sock = self._sock if self._sock is not None else self._connect()
        try:
            sock.sendall(command)
            header = _recv_exact(sock, 10)
            (size,) = struct.unpack_from(">I", header, 2)
            if size < 10:
                raise ConnectionError(f"response header says {size} bytes")
            response = header + _recv_exact(sock, size - 10)
        except (OSError, ConnectionError) as exc:
            self._sock = None
            sock.close()
            raise Unavailable(
                f"swtpm at {self.host}:{self.port} did not answer: {exc}", fix="trelab lab up"
            ) from None
        if self._keep:
            self._sock = sock
        else:
            self._close_socket(sock)
        return response

    @contextlib.contextmanager
    def kept(self) -> Iterator[None]:
        self._keep += 1
        try:
            yield
        finally:
            self._keep -= 1
            if not self._keep and self._sock is not None:
                sock, self._sock = self._sock, None
                self._close_socket(sock)

    def close(self) -> None:
        self._keep = 0
        if self._sock is not None:
            sock, self._sock = self._sock, None
            self._close_socket(sock)


class TctiTransport(Transport):
    """A tpm2-tss TCTI (device, tabrmd, mssim): the ESAPI's own transport for both users."""

    def __init__(self, tcti: TCTILdr) -> None:
        super().__init__()
        self._tcti = tcti

    def _exchange(self, command: bytes) -> bytes:
        try:
            self._tcti.transmit(command)
            return bytes(self._tcti.receive(4096, -1))
        except TSS2_Exception as exc:
            raise Unavailable(f"the TPM transport failed: {exc}") from None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._tcti.close()


class _EsysTcti(PyTCTI):
    """The transport as a TCTI for ESYS: transmit stores, receive executes.

    Ctrl-C. ``receive`` runs inside a cffi callback, where a KeyboardInterrupt cannot
    propagate (cffi prints "Exception ignored" and hands ESYS a bogus success, which then
    reads as a TPM refusal). So SIGINT is held while a command is on the wire — the command
    completes, as with a native TCTI — and :class:`InterruptibleEsys` raises it the moment
    the ESYS call returns to Python."""

    def __init__(self, transport: Transport) -> None:
        super().__init__(max_size=4096)
        self._transport = transport
        self._pending: bytes | None = None
        self.interrupted = False

    def do_transmit(self, command: bytes) -> None:
        self._pending = bytes(command)

    def do_receive(self, timeout: int) -> bytes:
        command, self._pending = self._pending, None
        if command is None:
            raise Unavailable("ESYS asked for a response without a command")
        if threading.current_thread() is not threading.main_thread():
            return self._transport.execute(command)  # signals reach only the main thread
        previous = signal.signal(signal.SIGINT, self._hold)
        try:
            return self._transport.execute(command)
        finally:
            signal.signal(signal.SIGINT, previous)

    def _hold(self, signum: int, frame: Any) -> None:
        self.interrupted = True


class InterruptibleEsys:
    """The ESAPI context, with Ctrl-C raised as soon as an ESYS call that held it returns
    (see :class:`_EsysTcti`). Attribute access is forwarded; wrapped methods are cached."""

    def __init__(self, esys: Any, tcti: _EsysTcti) -> None:
        self._esys = esys
        self._tcti = tcti

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._esys, name)
        if not callable(target):
            return target
        tcti = self._tcti

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return target(*args, **kwargs)
            finally:
                if tcti.interrupted:
                    tcti.interrupted = False
                    signal.raise_signal(signal.SIGINT)  # the handler of the moment decides

        self.__dict__[name] = call
        return call


class Esys(Protocol):
    """The ESAPI calls trelab makes, as tpm2-pytss declares them, with handles and TPM
    constants as the ints they are (tpm2-pytss' friendly ints; its own constants are typed
    int) and TPM2B byte strings accepted as bytes, as the ESAPI converts them. A
    :class:`TpmConnection`'s ``esys`` is typed as this, so a misspelt call or a wrong
    argument is a mypy error, not a runtime one."""

    def activate_credential(
        self,
        activate_handle: int,
        key_handle: int,
        credential_blob: TPM2B_ID_OBJECT | bytes,
        secret: TPM2B_ENCRYPTED_SECRET | bytes,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> TPM2B_DIGEST: ...
    def clear(
        self, auth_handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> None: ...
    def clock_set(
        self,
        new_time: int,
        auth: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def close(self) -> None: ...
    def create(
        self,
        parent_handle: int,
        in_sensitive: TPM2B_SENSITIVE_CREATE | None,
        in_public: TPM2B_PUBLIC | str = ...,
        outside_info: TPM2B_DATA | bytes | str = ...,
        creation_pcr: TPML_PCR_SELECTION | str = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[
        TPM2B_PRIVATE, TPM2B_PUBLIC, TPM2B_CREATION_DATA, TPM2B_DIGEST, TPMT_TK_CREATION
    ]: ...
    def create_primary(
        self,
        in_sensitive: TPM2B_SENSITIVE_CREATE | None,
        in_public: TPM2B_PUBLIC | str = ...,
        primary_handle: int = ...,
        outside_info: TPM2B_DATA | bytes | str = ...,
        creation_pcr: TPML_PCR_SELECTION | str = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[int, TPM2B_PUBLIC, TPM2B_CREATION_DATA, TPM2B_DIGEST, TPMT_TK_CREATION]: ...
    def dictionary_attack_lock_reset(
        self, lock_handle: int = ..., session1: int = ..., session2: int = ..., session3: int = ...
    ) -> None: ...
    def dictionary_attack_parameters(
        self,
        new_max_tries: int,
        new_recovery_time: int,
        lockout_recovery: int,
        lock_handle: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def duplicate(
        self,
        object_handle: int,
        new_parent_handle: int,
        encryption_key_in: TPM2B_DATA | bytes,
        symmetric_alg: TPMT_SYM_DEF_OBJECT,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[TPM2B_DATA, TPM2B_PRIVATE, TPM2B_ENCRYPTED_SECRET]: ...
    def ecdh_key_gen(
        self, key_handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> tuple[TPM2B_ECC_POINT, TPM2B_ECC_POINT]: ...
    def encrypt_decrypt(
        self,
        key_handle: int,
        decrypt: bool,
        mode: int,
        iv_in: TPM2B_IV | bytes | str,
        in_data: TPM2B_MAX_BUFFER | bytes | str,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[TPM2B_MAX_BUFFER, TPM2B_IV]: ...
    def encrypt_decrypt_2(
        self,
        key_handle: int,
        decrypt: bool,
        mode: int,
        iv_in: TPM2B_IV | bytes | str,
        in_data: TPM2B_MAX_BUFFER | bytes | str,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[TPM2B_MAX_BUFFER, TPM2B_IV]: ...
    def evict_control(
        self,
        auth: int,
        object_handle: int,
        persistent_handle: int,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> int: ...
    def field_upgrade_start(
        self,
        key_handle: int,
        fu_digest: TPM2B_DIGEST | bytes | str,
        manifest_signature: TPMT_SIGNATURE,
        authorization: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def flush_context(self, flush_handle: int) -> None: ...
    def get_capability(
        self,
        capability: int,
        prop: int,
        property_count: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[bool, TPMS_CAPABILITY_DATA]: ...
    def get_random(
        self, bytes_requested: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> TPM2B_DIGEST: ...
    def hmac(
        self,
        handle: int,
        buffer: TPM2B_MAX_BUFFER | bytes | str,
        hash_alg: int,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> TPM2B_DIGEST: ...
    def import_(
        self,
        parent_handle: int,
        encryption_key: TPM2B_DATA | bytes | str,
        object_public: TPM2B_PUBLIC,
        duplicate: TPM2B_PRIVATE | bytes,
        in_sym_seed: TPM2B_ENCRYPTED_SECRET | bytes,
        symmetric_alg: TPMT_SYM_DEF_OBJECT,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> TPM2B_PRIVATE: ...
    def load(
        self,
        parent_handle: int,
        in_private: TPM2B_PRIVATE | bytes,
        in_public: TPM2B_PUBLIC,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> int: ...
    def load_external(
        self,
        in_public: TPM2B_PUBLIC,
        in_private: TPM2B_SENSITIVE | None = ...,
        hierarchy: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> int: ...
    def nv_certify(
        self,
        sign_handle: int,
        nv_index: int,
        qualifying_data: TPM2B_DATA | bytes | str,
        in_scheme: TPMT_SIG_SCHEME,
        size: int,
        offset: int = ...,
        auth_handle: int | None = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[TPM2B_ATTEST, TPMT_SIGNATURE]: ...
    def nv_define_space(
        self,
        auth: TPM2B_AUTH | bytes | str | None,
        public_info: TPM2B_NV_PUBLIC,
        auth_handle: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> int: ...
    def nv_extend(
        self,
        nv_index: int,
        data: TPM2B_MAX_NV_BUFFER | bytes | str,
        auth_handle: int | None = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def nv_increment(
        self,
        nv_index: int,
        auth_handle: int | None = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def nv_read(
        self,
        nv_index: int,
        size: int,
        offset: int = ...,
        auth_handle: int | None = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> TPM2B_MAX_NV_BUFFER: ...
    def nv_read_public(
        self, nv_index: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> tuple[TPM2B_NV_PUBLIC, TPM2B_NAME]: ...
    def nv_undefine_space(
        self,
        nv_index: int,
        auth_handle: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def nv_write(
        self,
        nv_index: int,
        data: TPM2B_MAX_NV_BUFFER | bytes | str,
        offset: int = ...,
        auth_handle: int | None = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def object_change_auth(
        self,
        object_handle: int,
        parent_handle: int,
        new_auth: TPM2B_AUTH | bytes | str,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> TPM2B_PRIVATE: ...
    def pcr_extend(
        self,
        pcr_handle: int,
        digests: TPML_DIGEST_VALUES,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def pcr_read(
        self,
        pcr_selection_in: TPML_PCR_SELECTION | str,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[int, TPML_PCR_SELECTION, TPML_DIGEST]: ...
    def pcr_reset(
        self, pcr_handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> None: ...
    def policy_auth_value(
        self, policy_session: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> None: ...
    def policy_authorize(
        self,
        policy_session: int,
        approved_policy: TPM2B_DIGEST | bytes | str,
        key_sign: TPM2B_NAME | bytes | str,
        check_ticket: TPMT_TK_VERIFIED,
        policy_ref: TPM2B_NONCE | bytes | str = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_command_code(
        self,
        policy_session: int,
        code: int,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_cp_hash(
        self,
        policy_session: int,
        cp_hash_a: TPM2B_DIGEST | bytes | str,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_get_digest(
        self, policy_session: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> TPM2B_DIGEST: ...
    def policy_nv(
        self,
        auth_handle: int,
        nv_index: int,
        policy_session: int,
        operand_b: TPM2B_OPERAND | bytes,
        operation: int,
        offset: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_nv_written(
        self,
        policy_session: int,
        written_set: bool = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_or(
        self,
        policy_session: int,
        p_hash_list: TPML_DIGEST,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_pcr(
        self,
        policy_session: int,
        pcr_digest: TPM2B_DIGEST | bytes | str | None,
        pcrs: TPML_PCR_SELECTION | str,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def policy_restart(
        self, session_handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> None: ...
    def policy_secret(
        self,
        auth_handle: int,
        policy_session: int,
        nonce_tpm: TPM2B_NONCE | bytes | str = ...,
        cp_hash_a: TPM2B_DIGEST | bytes | str = ...,
        policy_ref: TPM2B_NONCE | bytes | str = ...,
        expiration: int = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[TPM2B_TIMEOUT, TPMT_TK_AUTH]: ...
    def quote(
        self,
        sign_handle: int,
        pcr_select: TPML_PCR_SELECTION | str,
        qualifying_data: TPM2B_DATA | bytes | str,
        in_scheme: TPMT_SIG_SCHEME = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> tuple[TPM2B_ATTEST, TPMT_SIGNATURE]: ...
    def read_clock(
        self, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> TPMS_TIME_INFO: ...
    def read_public(
        self, object_handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> tuple[TPM2B_PUBLIC, TPM2B_NAME, TPM2B_NAME]: ...
    def start_auth_session(
        self,
        tpm_key: int,
        bind: int,
        session_type: int,
        symmetric: TPMT_SYM_DEF | str | None,
        auth_hash: int,
        nonce_caller: TPM2B_NONCE | bytes | str | None = ...,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> int: ...
    def test_parms(
        self,
        parameters: TPMT_PUBLIC_PARMS,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> None: ...
    def tr_close(self, esys_handle: int) -> None: ...
    def tr_from_tpmpublic(
        self, handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> int: ...
    def tr_get_name(self, handle: int) -> TPM2B_NAME: ...
    def tr_get_tpm_handle(self, esys_handle: int) -> int: ...
    def tr_set_auth(
        self, esys_handle: int, auth_value: TPM2B_AUTH | bytes | str | None
    ) -> None: ...
    def trsess_set_attributes(self, session: int, attributes: int, mask: int = ...) -> None: ...
    def unseal(
        self, item_handle: int, session1: int = ..., session2: int = ..., session3: int = ...
    ) -> TPM2B_SENSITIVE_DATA: ...
    def verify_signature(
        self,
        key_handle: int,
        digest: TPM2B_DIGEST | bytes | str,
        signature: TPMT_SIGNATURE,
        session1: int = ...,
        session2: int = ...,
        session3: int = ...,
    ) -> TPMT_TK_VERIFIED: ...


def _conf(conf: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in filter(None, conf.split(",")):
        key, sep, value = part.partition("=")
        if not sep:
            raise BadInput(f"TCTI option {part!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def open_transport(name: str, conf: str) -> Transport:
    """The transport for TCTI ``name:conf`` (module docstring).

    Raises:
        BadInput: a malformed swtpm configuration.
        Unavailable: nothing answers there.
    """
    if name == "swtpm":
        options = _conf(conf)
        host = options.get("host", "127.0.0.1")
        text = options.get("port", "2321")
        if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 < int(text) < 65536:
            raise BadInput(f"swtpm TCTI port {text!r}")
        return SwtpmTransport(host, int(text))
    try:
        loader = TCTILdr(name, conf or None)
    except TSS2_Exception as exc:
        raise Unavailable(
            f"cannot open TPM {name}:{conf}: {exc}",
            fix="check the TCTI (trelab lab status / lab detect) and that libtss2-tcti-* is installed",
        ) from None
    return TctiTransport(loader)


def open_esys(transport: Transport) -> tuple[Esys, Any]:
    """(ESAPI context, its TCTI) over ``transport``; keep the TCTI alive as long as ESYS.

    The context is an :class:`InterruptibleEsys`, typed as the :class:`Esys` calls it forwards.

    Raises:
        Unavailable: ESYS cannot initialise.
    """
    tcti = _EsysTcti(transport)
    try:
        return cast(Esys, InterruptibleEsys(ESAPI(tcti), tcti)), tcti
    except TSS2_Exception as exc:
        raise Unavailable(f"the TPM does not answer: {exc}", fix="trelab lab up") from None


@dataclass
class TpmFacts:
    """What holds about one TPM for a connection's life, so hot paths do not ask again;
    whoever changes such a fact (NV undefine, TPM2_Clear) updates it here."""

    #: NV indices known to be defined
    nv_defined: set[int] = field(default_factory=set)
    #: the connection's one ESYS object per NV index (shared: never closed by a user)
    nv_objects: dict[int, Any] = field(default_factory=dict)
    #: trelab's four MID-store NV indices were checked (defined, with our attributes)
    store_indices_checked: bool = False
    #: persistent EK matched to its certificate, per kind: (ESYS object, TPM2B_PUBLIC)
    ek: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    #: the symmetric commands and AES modes the TPM implements (tpm.keyholder.probe_symmetric)
    symmetric: Any = None
    #: the persistent SRK: (ESYS object, TPM2B_PUBLIC, name), as tpm.mid.ensure_srk found it
    srk: tuple[Any, Any, bytes] | None = None
    #: the EK's TPM2B_PUBLIC (as held in ``ek``) and its name, computed once
    ek_name: tuple[Any, bytes] | None = None
    #: the EK's TPM2B_PUBLIC and its TCG policy's PolicyOR branches (tpm.ek.ek_policy_or_list)
    ek_branches: tuple[Any, list[bytes] | None] | None = None

    def remember_nv(self, index: int, obj: Any) -> None:
        self.nv_objects[index] = obj
        self.nv_defined.add(index)

    def forget_nv(self, index: int) -> Any:
        """Drop what is known of ``index``; returns its ESYS object, if any."""
        self.nv_defined.discard(index)
        return self.nv_objects.pop(index, None)

    def holds_ek(self, obj: Any) -> bool:
        return any(kept[0] is obj for kept in self.ek.values())

    def forget_all(self) -> None:
        """After TPM2_Clear: nothing known holds any more."""
        self.nv_defined.clear()
        self.nv_objects.clear()
        self.store_indices_checked = False
        self.ek.clear()
        self.srk = None
        self.ek_name = None
        self.ek_branches = None


def unmarshal(kind: type[_Marshalled], blob: bytes) -> _Marshalled:
    """The ``kind`` structure marshalled in ``blob`` (trailing bytes ignored)."""
    value, _ = kind.unmarshal(blob)  # type: ignore[attr-defined]
    return value  # type: ignore[no-any-return]


@contextlib.contextmanager
def swapped_esys_library(wrap_library: Callable[[Any], Any]) -> Iterator[None]:
    """Inside the block, ESAPI calls into ``wrap_library(lib)`` instead of tpm2-pytss' cffi
    library ``lib`` (the bench times the C ``Esys_*`` calls this way)."""
    module: Any = sys.modules[ESAPI.__module__]
    library = module.lib
    module.lib = wrap_library(library)
    try:
        yield
    finally:
        module.lib = library
