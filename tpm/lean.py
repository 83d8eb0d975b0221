"""Pure. The lean TPM command and session layer: sans-I/O ``wrap``/``unwrap`` of the commands
on trelab's hot paths (TPM 2.0 Part 1 §18–§21, Part 3 for each command's layout).

Why it exists: ESYS computes the same HMACs and keys, but the libtss2-esys that Debian ships
builds a fresh OpenSSL library context for every hash, HMAC and nonce, which costs more than
the TPM command it protects. Here a command is bytes built by :func:`wrap` and a response
bytes checked by :meth:`Pending.unwrap`; the caller moves the bytes (:mod:`tpm.tss`'s
transport). The security argument is in ``docs/tpm-sessions.md``.

Rules kept here, not left to callers:

- one :class:`Session` belongs to this layer only; ESYS never sees its handle;
- the command HMAC covers the parameters as sent (first TPM2B already encrypted);
- the response HMAC is checked (constant time) before anything of the response is used, and
  nonceTPM rolls only after it verified; a failed check marks the session ``broken`` and the
  caller must flush it and start another;
- only the first parameter, and only if it is a TPM2B, is ever encrypted (Part 1 §21.1);
- a policy session keys its HMAC with the entity's authValue only after PolicyAuthValue ran
  in it (:meth:`Session.policy_auth_value`), and forgets that after each authorised use
  (the TPM resets the policy then).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from tpm import session_crypto as sc
from trelab.errors import BadInput, CheckFailed, RemoteProtocolError, TrelabError

__all__ = [
    "CC",
    "PASSWORD_SESSION",
    "Pending",
    "ResponseAuthFailed",
    "Session",
    "TpmRefused",
    "parse_tpm2b",
    "tpm2b",
    "wrap",
]

ST_NO_SESSIONS = 0x8001
ST_SESSIONS = 0x8002
PASSWORD_SESSION = 0x40000009
RH_NULL = 0x40000007
ALG_NULL = 0x0010
ALG_AES = 0x0006
ALG_CFB = 0x0043
SE_HMAC = 0x00
SE_POLICY = 0x01
CONTINUE = 0x01
DECRYPT = 0x20
ENCRYPT = 0x40
RC_SUCCESS = 0
#: TPM_RC_AUTH_FAIL, TPM_RC_NONCE, TPM_RC_BAD_AUTH: the TPM rejected a session's HMAC or nonce
_SESSION_FAILURES = frozenset({0x08E, 0x08F, 0x0A2})


class CC:
    """Command codes (Part 2 §6.5) of the commands this layer wraps."""

    NV_UNDEFINE_SPACE = 0x122
    NV_DEFINE_SPACE = 0x12A
    NV_INCREMENT = 0x134
    ACTIVATE_CREDENTIAL = 0x147
    NV_READ = 0x14E
    NV_EXTEND = 0x136
    NV_WRITE = 0x137
    POLICY_NV = 0x149
    POLICY_SECRET = 0x151
    HMAC = 0x155
    IMPORT = 0x156
    LOAD = 0x157
    QUOTE = 0x158
    UNSEAL = 0x15E
    ENCRYPT_DECRYPT = 0x164
    FLUSH_CONTEXT = 0x165
    LOAD_EXTERNAL = 0x167
    NV_READ_PUBLIC = 0x169
    POLICY_AUTHORIZE = 0x16A
    POLICY_CP_HASH = 0x16E
    VERIFY_SIGNATURE = 0x177
    GET_CAPABILITY = 0x17A
    READ_PUBLIC = 0x173
    PCR_READ = 0x17E
    POLICY_NV_WRITTEN = 0x18F
    POLICY_OR = 0x171
    POLICY_AUTH_VALUE = 0x16B
    POLICY_COMMAND_CODE = 0x16C
    START_AUTH_SESSION = 0x176
    POLICY_PCR = 0x17F
    POLICY_RESTART = 0x180
    GET_RANDOM = 0x17B
    NV_CERTIFY = 0x184
    POLICY_GET_DIGEST = 0x189
    ENCRYPT_DECRYPT_2 = 0x193


class TpmRefused(TrelabError):
    """The TPM answered a command with a response code other than success; ``rc`` is it."""

    def __init__(self, command_code: int, rc: int) -> None:
        super().__init__(f"TPM refused command 0x{command_code:x}: response code 0x{rc:x}")
        self.command_code = command_code
        self.rc = rc

    @property
    def base(self) -> int:
        """The rc without its parameter/handle/session number (format-one codes)."""
        if self.rc & 0x80:
            return self.rc & 0xBF
        return self.rc


class ResponseAuthFailed(CheckFailed):
    """A response's HMAC does not verify: the response was altered or is not from the TPM
    holding the session; nothing of it was used, and the session must be flushed."""


_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_HEADER = struct.Struct(">HII")
#: one attribute byte per value, made once
_BYTE = [bytes((value,)) for value in range(256)]
#: SHA-256 ready to copy (cpHash, rpHash): a copy skips looking the algorithm up again
_SHA256 = hashlib.sha256()
#: the handle area of a command or response with 0…3 handles
_HANDLES = [struct.Struct(f">{count}I") for count in range(4)]


def tpm2b(data: bytes) -> bytes:
    """A TPM2B: 16-bit big-endian size, then the bytes."""
    if len(data) > 0xFFFF:
        raise BadInput(f"TPM2B of {len(data)} bytes")
    return _U16.pack(len(data)) + data


def parse_tpm2b(buffer: bytes, offset: int) -> tuple[bytes, int]:
    """(payload, offset after it) of the TPM2B at ``offset``."""
    if offset + 2 > len(buffer):
        raise RemoteProtocolError("TPM response ends inside a TPM2B size")
    end = offset + 2 + ((buffer[offset] << 8) | buffer[offset + 1])
    if end > len(buffer):
        raise RemoteProtocolError("TPM response ends inside a TPM2B")
    return buffer[offset + 2 : end], end


def _random(size: int) -> bytes:
    return os.urandom(size)


@dataclass(eq=False)
class Session:
    """A TPM HMAC or policy session owned by this layer (never shared with ESYS).

    ``key`` is the session key (empty for an unsalted, unbound session); ``nonce_tpm`` the
    TPM's last nonce, rolled only by :meth:`Pending.unwrap` after the response HMAC verified.
    ``symmetric`` says the session was started with AES-128-CFB (parameter encryption).
    """

    handle: int
    kind: Literal["hmac", "policy"]
    key: bytes = field(repr=False)
    nonce_tpm: bytes = field(repr=False)
    symmetric: bool
    auth_hash: int = sc.ALG_SHA256
    salted: bool = False
    #: PolicyAuthValue ran since the last authorised use: the entity's authValue keys the HMAC
    auth_value_needed: bool = False
    #: a response HMAC failed (or the TPM refused ours): flush and start a new session
    broken: bool = False
    #: the TPM flushed it: a command sent with continueSession clear succeeded
    ended: bool = False
    uses: int = 0
    _keyed: dict[bytes, sc.KeyedHmac] = field(default_factory=dict, repr=False)

    @property
    def nonce_size(self) -> int:
        return sc.DIGEST_SIZE[self.auth_hash]

    def policy_auth_value(self) -> None:
        """Record that TPM2_PolicyAuthValue succeeded in this (policy) session."""
        if self.kind != "policy":
            raise BadInput("PolicyAuthValue is for policy sessions")
        self.auth_value_needed = True

    def keyed(self, auth_value: bytes) -> sc.KeyedHmac:
        """The HMAC under this command's key (:meth:`hmac_key`), keyed once per session and
        authValue: it computes the command/response HMACs and the CFB key of the session."""
        value = auth_value if self.kind == "hmac" or self.auth_value_needed else b""
        keyed = self._keyed.get(value)
        if keyed is None:
            if self.auth_hash != sc.ALG_SHA256:
                raise BadInput("the lean layer's sessions use SHA-256")
            stripped = value.rstrip(b"\x00")  # trailing zeros never key an HMAC (§19.6.5)
            keyed = self._keyed.get(stripped)
            if keyed is None:
                keyed = self._keyed[stripped] = sc.KeyedHmac(self.auth_hash, self.key + stripped)
            self._keyed[value] = keyed
        return keyed

    def hmac_key(self, auth_value: bytes) -> tuple[bytes, bytes]:
        """(sessionKey, authValue part) keying this command's HMAC (Part 1 §19.6.5): an HMAC
        session always adds the entity's authValue (the layer's sessions are unbound); a
        policy session only after PolicyAuthValue."""
        if self.kind == "hmac" or self.auth_value_needed:
            return self.key, auth_value
        return self.key, b""


# ---- StartAuthSession (no sessions of its own) ----------------------------------------------


def wrap_start_auth_session(
    *,
    tpm_key: int,
    bind: int,
    nonce_caller: bytes,
    encrypted_salt: bytes,
    kind: Literal["hmac", "policy"],
    symmetric: bool,
    auth_hash: int = sc.ALG_SHA256,
) -> bytes:
    """TPM2_StartAuthSession (Part 3 §11.1); AES-128-CFB when ``symmetric``."""
    sym = struct.pack(">HHH", ALG_AES, 128, ALG_CFB) if symmetric else struct.pack(">H", ALG_NULL)
    params = (
        tpm2b(nonce_caller)
        + tpm2b(encrypted_salt)
        + bytes([SE_POLICY if kind == "policy" else SE_HMAC])
        + sym
        + struct.pack(">H", auth_hash)
    )
    return _plain(CC.START_AUTH_SESSION, [tpm_key, bind], params)


def unwrap_start_auth_session(response: bytes) -> tuple[int, bytes]:
    """(session handle, nonceTPM) of a StartAuthSession response."""
    handles, params = _plain_response(CC.START_AUTH_SESSION, response, 1)
    nonce, end = parse_tpm2b(params, 0)
    if end != len(params):
        raise RemoteProtocolError("StartAuthSession response has trailing bytes")
    return handles[0], nonce


def open_session(
    handle: int,
    nonce_tpm: bytes,
    nonce_caller: bytes,
    salt: bytes,
    *,
    kind: Literal["hmac", "policy"],
    symmetric: bool,
    auth_hash: int = sc.ALG_SHA256,
) -> Session:
    """The :class:`Session` a successful StartAuthSession created (unbound)."""
    key = sc.session_key(auth_hash, salt, b"", nonce_tpm, nonce_caller)
    return Session(
        handle=handle,
        kind=kind,
        key=key,
        nonce_tpm=nonce_tpm,
        symmetric=symmetric,
        auth_hash=auth_hash,
        salted=bool(salt),
    )


# ---- commands without authorisation -------------------------------------------------------------


def _plain(code: int, handles: Sequence[int], params: bytes) -> bytes:
    head = struct.pack(f">{len(handles)}I", *handles)
    return _HEADER.pack(ST_NO_SESSIONS, 10 + len(head) + len(params), code) + head + params


def _header(code: int, response: bytes) -> tuple[int, int]:
    if len(response) < 10:
        raise RemoteProtocolError(f"TPM response of {len(response)} bytes")
    tag, size, rc = _HEADER.unpack_from(response, 0)
    if size != len(response):
        raise RemoteProtocolError(f"TPM response says {size} bytes, has {len(response)}")
    if rc != RC_SUCCESS:
        raise TpmRefused(code, rc)
    if tag not in (ST_NO_SESSIONS, ST_SESSIONS):
        raise RemoteProtocolError(f"TPM response tag 0x{tag:04x}")
    return tag, size


def _plain_response(code: int, response: bytes, handle_count: int) -> tuple[list[int], bytes]:
    tag, _ = _header(code, response)
    if tag != ST_NO_SESSIONS:
        raise RemoteProtocolError("unexpected sessions in a response to a command without any")
    end = 10 + 4 * handle_count
    if end > len(response):
        raise RemoteProtocolError("TPM response ends inside its handles")
    handles = list(struct.unpack_from(f">{handle_count}I", response, 10))
    return handles, response[end:]


def wrap_plain(code: int, handles: Sequence[int], params: bytes = b"") -> bytes:
    """A command with no authorisation area (FlushContext, the policy commands on a session)."""
    return _plain(code, handles, params)


def unwrap_plain(code: int, response: bytes, handle_count: int = 0) -> tuple[list[int], bytes]:
    """(handles, parameters) of a response to a command without sessions."""
    return _plain_response(code, response, handle_count)


def wrap_flush_context(handle: int) -> bytes:
    """TPM2_FlushContext (Part 3 §28.4): the handle is a parameter."""
    return _plain(CC.FLUSH_CONTEXT, [], struct.pack(">I", handle))


# ---- commands with one authorisation session ----------------------------------------------------


class Auth(NamedTuple):
    """How one handle of a command is authorised: the empty/known password (``session``
    None, PASSWORD_SESSION) or one of this layer's sessions, with the entity's authValue and
    name (its name enters cpHash either way). Immutable (a tuple: cheap to make per command)."""

    session: Session | None = None
    auth_value: bytes = b""
    decrypt: bool = False
    encrypt: bool = False
    #: the session's last use: continueSession clear, the TPM flushes it after success
    last_use: bool = False

    def __repr__(self) -> str:  # the authValue (a PIN) never shows
        return (
            f"Auth(session={self.session!r}, decrypt={self.decrypt}, encrypt={self.encrypt}, "
            f"last_use={self.last_use})"
        )


@dataclass(eq=False, slots=True)
class Pending:
    """A wrapped command waiting for its response; :meth:`unwrap` checks and decodes it."""

    code: int
    handle_count: int
    auths: tuple[Auth, ...]
    nonces: tuple[bytes, ...] = field(repr=False)
    attributes: tuple[int, ...]
    #: one authorisation (the common case, :meth:`_unwrap_one`)
    single: bool = False
    #: with ``single`` and by a session: the HMAC keyed for the command (what the response
    #: HMAC and the response's parameter decryption use too)
    keyed: sc.KeyedHmac | None = field(default=None, repr=False)

    def unwrap(self, response: bytes) -> tuple[list[int], bytes]:
        """(response handles, response parameters), HMACs verified, first TPM2B decrypted.

        Raises:
            TpmRefused: the TPM returned an error (sessions: TPM-side HMAC failures mark
                the session broken; otherwise nonces stay as they were).
            ResponseAuthFailed: a response HMAC is wrong (the session is marked broken).
            RemoteProtocolError: the response is malformed.
        """
        if self.single:
            done = self._unwrap_one(response, self.keyed)
            if done is not None:
                return done
        return self._unwrap(response)

    def _unwrap_one(
        self, response: bytes, keyed: sc.KeyedHmac | None
    ) -> tuple[list[int], bytes] | None:
        """:meth:`unwrap` of a successful, well-formed response to a command with one
        authorisation; None for anything else (:meth:`_unwrap` then raises the precise
        error). The same checks in the same order: for a session the HMAC first, then the
        nonce rolls, then the first parameter is decrypted."""
        size = len(response)
        if size < 10:
            return None
        tag, declared, rc = _HEADER.unpack_from(response, 0)
        count = self.handle_count
        offset = 10 + 4 * count
        if (
            declared != size
            or rc != RC_SUCCESS
            or tag != ST_SESSIONS
            or offset + 4 > size
            or count >= len(_HANDLES)
        ):
            return None
        start = offset + 4
        end = start + _U32.unpack_from(response, offset)[0]
        if end + 2 > size:
            return None
        nonce_end = end + 2 + ((response[end] << 8) | response[end + 1])
        if nonce_end + 3 > size:
            return None
        mac_start = nonce_end + 3
        if mac_start + ((response[nonce_end + 1] << 8) | response[nonce_end + 2]) != size:
            return None
        params = response[start:end]
        handles = list(_HANDLES[count].unpack_from(response, 10)) if count else []
        if keyed is None:  # a password authorisation: nothing to verify
            return handles, params
        nonce_tpm = response[end + 2 : nonce_end]
        auth = self.auths[0]
        session = auth.session
        assert session is not None
        digest = _SHA256.copy()
        digest.update(b"\x00\x00\x00\x00" + _U32.pack(self.code) + params)
        rphash = digest.digest()
        expected = keyed.mac1(rphash + nonce_tpm + self.nonces[0] + _BYTE[response[nonce_end]])
        if not sc.hmac_equal(expected, response[mac_start:]):
            session.broken = True
            raise ResponseAuthFailed(
                f"response to TPM command 0x{self.code:x}: the session HMAC does not verify"
            )
        # the HMAC verified: only now roll the nonce and use the parameters
        session.nonce_tpm = nonce_tpm
        session.uses += 1
        if auth.last_use:
            session.ended = True
        if auth.encrypt:
            params = _cfb_first(params, session, keyed, nonce_tpm, self.nonces[0], False)
        if session.kind == "policy":
            session.auth_value_needed = False  # the TPM reset the policy after this use
        return handles, params

    def _unwrap(self, response: bytes) -> tuple[list[int], bytes]:
        try:
            tag, _ = _header(self.code, response)
        except TpmRefused as refused:
            if refused.base in _SESSION_FAILURES:
                for auth in self.auths:
                    if auth.session is not None:
                        auth.session.broken = True
            raise
        if tag != ST_SESSIONS:
            raise RemoteProtocolError("response to a command with sessions has none")
        size = len(response)
        count = self.handle_count
        offset = 10 + 4 * count
        if offset + 4 > size:
            raise RemoteProtocolError("TPM response ends before its parameter size")
        handles = list(struct.unpack_from(f">{count}I", response, 10)) if count else []
        start = offset + 4
        end = start + _U32.unpack_from(response, offset)[0]
        if end > size:
            raise RemoteProtocolError("TPM response parameters overrun the response")
        params = response[start:end]
        # response auth areas, one per command auth, in order
        cursor = end
        checked: list[tuple[Session, bytes]] = []
        rphash: bytes | None = None
        for auth, nonce_caller in zip(self.auths, self.nonces, strict=True):
            nonce_tpm, cursor = parse_tpm2b(response, cursor)
            if cursor + 1 > size:
                raise RemoteProtocolError("TPM response ends inside an auth area")
            r_attrs = _BYTE[response[cursor]]
            mac, cursor = parse_tpm2b(response, cursor + 1)
            session = auth.session
            if session is None:
                continue  # password session: nothing to verify
            if rphash is None:
                rphash = hashlib.sha256(
                    b"\x00\x00\x00\x00" + _U32.pack(self.code) + params
                ).digest()
            expected = session.keyed(auth.auth_value).mac1(
                rphash + nonce_tpm + nonce_caller + r_attrs
            )
            if not sc.hmac_equal(expected, mac):
                session.broken = True
                raise ResponseAuthFailed(
                    f"response to TPM command 0x{self.code:x}: the session HMAC does not verify"
                )
            checked.append((session, nonce_tpm))
        if cursor != size:
            raise RemoteProtocolError("TPM response has bytes after its auth areas")
        if not checked:
            return handles, params
        # every HMAC verified: only now roll the nonces and use the parameters
        for session, nonce_tpm in checked:
            session.nonce_tpm = nonce_tpm
            session.uses += 1
        for auth in self.auths:
            if auth.session is not None and auth.last_use:
                auth.session.ended = True
        for auth, nonce_caller in zip(self.auths, self.nonces, strict=True):
            session = auth.session
            if session is not None and auth.encrypt:
                params = _crypt_first(
                    params, session, auth.auth_value, session.nonce_tpm, nonce_caller, False
                )
        for session, _ in checked:
            if session.kind == "policy":
                session.auth_value_needed = False  # the TPM reset the policy after this use
        return handles, params


def _crypt_first(
    params: bytes,
    session: Session,
    auth_value: bytes,
    newer: bytes,
    older: bytes,
    encrypt: bool,
) -> bytes:
    """AES-CFB over the first parameter's TPM2B payload (Part 1 §21.3)."""
    return _cfb_first(params, session, session.keyed(auth_value), newer, older, encrypt)


def _cfb_first(
    params: bytes,
    session: Session,
    keyed: sc.KeyedHmac,
    newer: bytes,
    older: bytes,
    encrypt: bool,
) -> bytes:
    """:func:`_crypt_first` with the session's HMAC keyed for this command."""
    if not session.symmetric:
        raise BadInput("parameter encryption needs a session started with AES-128-CFB")
    payload, end = parse_tpm2b(params, 0)
    material = keyed.cfb_material(newer, older)
    aes_key, iv = material[:16], material[16:]
    done = sc.encrypt_cfb(aes_key, iv, payload) if encrypt else sc.decrypt_cfb(aes_key, iv, payload)
    return params[:2] + done + params[end:]


#: a password authorisation's head: TPM_RS_PW, empty nonce, then the attribute byte
_PASSWORD_HEAD = _U32.pack(PASSWORD_SESSION) + b"\x00\x00"


def wrap(
    code: int,
    handles: Sequence[int],
    names: Sequence[bytes],
    params: bytes,
    auths: Sequence[Auth],
    *,
    response_handles: int = 0,
    nonce: bytes | None = None,
) -> tuple[bytes, Pending]:
    """A command with authorisation areas: ``auths[i]`` authorises ``handles[i]`` (the
    first handles of the command, Part 1 §18.2); ``names`` are the names of all handles.
    ``decrypt`` on an auth encrypts the first parameter, which the caller asserts is a TPM2B.
    ``nonce`` pins nonceCaller (tests).
    """
    if len(names) != len(handles):
        raise BadInput("one name per handle")
    if not auths or len(auths) > 3:
        raise BadInput("a command carries one to three authorisations")
    if len(handles) >= len(_HANDLES):
        raise BadInput("a TPM command has at most three handles")
    if len(auths) == 1:
        if auths[0].session is not None:
            return _wrap_one_session(
                code, handles, names, params, auths[0], response_handles, nonce
            )
        password = _PASSWORD_HEAD + _BYTE[CONTINUE] + tpm2b(auths[0].auth_value)
        head = _HANDLES[len(handles)].pack(*handles)
        command = b"".join(
            (_HEADER.pack(ST_SESSIONS, 14 + len(head) + len(password) + len(params), code),
             head, _U32.pack(len(password)), password, params)
        )  # fmt: skip
        return command, Pending(code, response_handles, (auths[0],), (b"",), (CONTINUE,), True)
    return _wrap_general(code, handles, names, params, auths, response_handles, nonce)


def _wrap_general(
    code: int,
    handles: Sequence[int],
    names: Sequence[bytes],
    params: bytes,
    auths: Sequence[Auth],
    response_handles: int,
    nonce: bytes | None,
) -> tuple[bytes, Pending]:
    """:func:`wrap` for any one to three authorisations (checked by the caller)."""
    sent_params = params
    nonces: list[bytes] = []
    attributes: list[int] = []
    for auth in auths:
        session = auth.session
        if session is None:
            nonces.append(b"")
            attributes.append(CONTINUE)
            continue
        if session.broken:
            raise BadInput("this session failed an HMAC check: flush it and start another")
        if session.ended:
            raise BadInput("this session ended with its last use")
        nonce_caller = nonce if nonce is not None else os.urandom(session.nonce_size)
        nonces.append(nonce_caller)
        attrs = (
            (0 if auth.last_use else CONTINUE)
            | (DECRYPT if auth.decrypt else 0)
            | (ENCRYPT if auth.encrypt else 0)
        )
        attributes.append(attrs)
        if auth.decrypt:
            sent_params = _crypt_first(
                sent_params, session, auth.auth_value, nonce_caller, session.nonce_tpm, True
            )
    area: list[bytes] = []
    cphash: bytes | None = None
    for auth, nonce_caller, attrs in zip(auths, nonces, attributes, strict=True):
        session = auth.session
        if session is None:
            area.append(_PASSWORD_HEAD + _BYTE[attrs] + tpm2b(auth.auth_value))
            continue
        if cphash is None:
            cphash = hashlib.sha256(b"".join((_U32.pack(code), *names, sent_params))).digest()
        attr = _BYTE[attrs]
        mac = session.keyed(auth.auth_value).mac1(cphash + nonce_caller + session.nonce_tpm + attr)
        area.append(
            _U32.pack(session.handle) + _U16.pack(len(nonce_caller)) + nonce_caller + attr
            + _U16.pack(len(mac)) + mac
        )  # fmt: skip
    auth_area = b"".join(area)
    head = struct.pack(f">{len(handles)}I", *handles)
    size = 14 + len(head) + len(auth_area) + len(sent_params)
    command = b"".join(
        (_HEADER.pack(ST_SESSIONS, size, code), head, _U32.pack(len(auth_area)), auth_area,
         sent_params)
    )  # fmt: skip
    return command, Pending(code, response_handles, tuple(auths), tuple(nonces), tuple(attributes))


def _wrap_one_session(
    code: int,
    handles: Sequence[int],
    names: Sequence[bytes],
    params: bytes,
    auth: Auth,
    response_handles: int,
    nonce: bytes | None,
) -> tuple[bytes, Pending]:
    """:func:`wrap` for the common case, one authorisation and by a session: the same bytes,
    the session's HMAC keyed once for the command and its response."""
    session = auth.session
    assert session is not None
    if session.broken:
        raise BadInput("this session failed an HMAC check: flush it and start another")
    if session.ended:
        raise BadInput("this session ended with its last use")
    nonce_caller = nonce if nonce is not None else os.urandom(session.nonce_size)
    attrs = (
        (0 if auth.last_use else CONTINUE)
        | (DECRYPT if auth.decrypt else 0)
        | (ENCRYPT if auth.encrypt else 0)
    )
    keyed = session.keyed(auth.auth_value)
    nonce_tpm = session.nonce_tpm
    if auth.decrypt:
        params = _cfb_first(params, session, keyed, nonce_caller, nonce_tpm, True)
    attr = _BYTE[attrs]
    digest = _SHA256.copy()
    digest.update(b"".join((_U32.pack(code), *names, params)))
    cphash = digest.digest()
    mac = keyed.mac1(cphash + nonce_caller + nonce_tpm + attr)
    area = b"".join(
        (_U32.pack(session.handle), _U16.pack(len(nonce_caller)), nonce_caller, attr,
         _U16.pack(len(mac)), mac)
    )  # fmt: skip
    head = _HANDLES[len(handles)].pack(*handles)
    command = b"".join(
        (_HEADER.pack(ST_SESSIONS, 14 + len(head) + len(area) + len(params), code), head,
         _U32.pack(len(area)), area, params)
    )  # fmt: skip
    pending = Pending(code, response_handles, (auth,), (nonce_caller,), (attrs,), True, keyed)
    return command, pending


# ---- parameter layouts of the hot-path commands (Part 3) ---------------------------------------


def encrypt_decrypt2_params(data: bytes, *, decrypt: bool, mode: int, iv: bytes) -> bytes:
    """TPM2_EncryptDecrypt2 (Part 3 §15.3): inData first, so parameter encryption hides it."""
    return tpm2b(data) + bytes([1 if decrypt else 0]) + struct.pack(">H", mode) + tpm2b(iv)


def encrypt_decrypt2_result(params: bytes) -> tuple[bytes, bytes]:
    """(outData, ivOut) of an EncryptDecrypt2 response."""
    out, offset = parse_tpm2b(params, 0)
    iv, offset = parse_tpm2b(params, offset)
    if offset != len(params):
        raise RemoteProtocolError("EncryptDecrypt2 response has trailing bytes")
    return out, iv


def single_tpm2b(params: bytes, what: str) -> bytes:
    """The one TPM2B parameter of a response (Unseal's outData, Load's name)."""
    value, offset = parse_tpm2b(params, 0)
    if offset != len(params):
        raise RemoteProtocolError(f"{what} response has trailing bytes")
    return value


def policy_pcr_params(pcr_digest: bytes, pcr_selection: bytes) -> bytes:
    """TPM2_PolicyPCR: pcrDigest TPM2B, then a marshalled TPML_PCR_SELECTION."""
    return tpm2b(pcr_digest) + pcr_selection


def policy_secret_params(
    nonce_tpm: bytes = b"", cp_hash_a: bytes = b"", policy_ref: bytes = b"", expiration: int = 0
) -> bytes:
    """TPM2_PolicySecret (Part 3 §23.4) parameters."""
    return tpm2b(nonce_tpm) + tpm2b(cp_hash_a) + tpm2b(policy_ref) + struct.pack(">i", expiration)


def policy_nv_params(operand: bytes, offset: int, operation: int) -> bytes:
    """TPM2_PolicyNV (Part 3 §23.9): operandB first."""
    return tpm2b(operand) + struct.pack(">HH", offset, operation)


def nv_write_params(data: bytes, offset: int) -> bytes:
    """TPM2_NV_Write (Part 3 §31.7): data first, so parameter encryption can hide it."""
    return tpm2b(data) + struct.pack(">H", offset)
