"""Edge: TPM. The AKA core's keyholders with K inside the TPM (docs/architecture.md, principle 2).

- :class:`TpmBlockCipher` — E_K by TPM2_EncryptDecrypt2 (or TPM2_EncryptDecrypt) on an
  AES-128 SYMCIPHER object: ``ecb`` sends all blocks of a call in one ECB command; ``cfb`` is
  the fallback for TPMs that refuse ECB (the PC Client profile makes ECB a "should not"): one
  CFB *decrypt* with IV = 0¹⁶ and input X1‖…‖Xn‖0¹⁶ returns P_{i+1} = C_{i+1} ⊕ E_K(X_i),
  so E_K(X_i) = P_{i+1} ⊕ C_{i+1} (docs/tpm.md's trick, shifted by one block so that no X_i
  travels as ivIn: ivIn is not the first parameter, so parameter encryption cannot hide it,
  and X1 is RAND ⊕ OPc). K never leaves the TPM.
- **Bus protection** (TR 33.812 §7.1.2.1 threat 9, counter-measures 2 and 5): the E_K inputs
  and outputs are OPc and RES/CK/IK in disguise (X1 = RAND ⊕ OPc; OUT2 ⊕ OPc = RES…; and
  OUT1's first half ⊕ OPc is MAC-A, public in AUTN), so a logic analyser on the TPM's bus
  would learn them. :class:`TpmBlockCipher` therefore takes the session its commands run in:
  a salted session with TPMA_SESSION decrypt|encrypt makes the TPM and ESYS AES-128-CFB
  encrypt inData and outData with a key derived from the salt (TPM 2.0 Part 1 §21.3), which a
  sniffer of the whole session setup cannot derive (the salt is encrypted to a TPM key).
  :class:`tpm.mid.LoadedMid` chooses the session; TPM2_EncryptDecrypt (v1) puts a flag first,
  so only EncryptDecrypt2 can carry encrypted inData.
- :class:`TpmHmac` — HMAC-SHA-256 under K by TPM2_HMAC on a keyed-hash object, the kernel of
  the HMAC-SHA-256 algorithm set (docs/hmac-aka.md) for TPMs without EncryptDecrypt(2):
  every PC Client TPM has it. ``buffer`` (OPc, RAND, SQN in the message) is TPM2_HMAC's first
  command parameter and ``outHMAC`` (RES, CK, IK, AK) its first response parameter, so the
  same salted decrypt|encrypt session hides both on the bus. Mode ``"hmac"``.
- :class:`SealedAes` / :class:`SealedKeccak` / :class:`SealedHmac` — the weaker fallback for TPMs without a
  symmetric command, and the only way for TUAK (no TPM has Keccak): K is sealed data, unsealed
  over a salted, response-encrypted session for one AKA, used in software, then the buffer is
  zeroed. K *is* in host memory during that AKA, and Python cannot guarantee that no copy
  survives (the AES context, tpm2-pytss buffers): reported as mode ``"sealed"``.

Milenage on the USIM side needs three calls per AKA (TEMP; OUT2…OUT5 for AK; OUT1 once SQN is
known), so a device AKA is three TPM commands in ``ecb`` and ``cfb`` mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from aka.keccak import keccak_f1600
from aka.keyholder import BlockCipher, HmacKeyholder, KeccakKeyholder
from aka.tuak import KEY_FIELD
from tpm import lean_commands
from tpm.connection import TpmConnection
from tpm.lean import ResponseAuthFailed, Session, TpmRefused
from tpm.lean_commands import LeanObject
from tpm.mid_errors import MidRefused, PinRejected, TpmLockedOut
from tpm.tss import ESYS_TR, TPM2_ALG, TPM2B_IV, TSS2_Exception
from trelab.errors import BadInput, TrelabError, Unavailable

__all__ = [
    "Authorizer",
    "HmacCommand",
    "LeanPolicy",
    "Mode",
    "SealedAes",
    "SealedHmac",
    "SealedKeccak",
    "SymmetricSupport",
    "TpmBlockCipher",
    "TpmHmac",
    "probe_symmetric",
    "translate",
]

Mode = Literal["ecb", "cfb", "sealed", "hmac"]


class LeanPolicy(Protocol):
    """Runs a policy-gated key's steps in the lean layer's policy session before each command
    (``before``) and records the TPM's reset of the policy after a successful one (``after``)."""

    def before(self) -> None: ...

    def after(self) -> None: ...


#: Returns a context manager yielding the session that authorises one command on the key
#: (a policy session with its steps just run).
Authorizer = Callable[[], AbstractContextManager[Any]]
#: Sends one TPM2_HMAC(key, buffer, SHA-256) in ``session`` and returns outHMAC: ESYS by
#: default; a lean command layer plugs in here without touching the keyholder.
HmacCommand = Callable[[Any, bytes, Any], bytes]
_BLOCK = 16
_MAX_DATA = 1024  # TPM2B_MAX_BUFFER on swtpm and most chips
_ZERO_BLOCK = bytes(_BLOCK)
try:  # tpm2-pytss' cffi handle, for reading TPM2B payloads without building Python objects
    from tpm.tss import ffi as _ffi
except ImportError:  # pragma: no cover - other tpm2-pytss builds: bytes() below still works
    _ffi = None


def translate(exc: Exception, what: str) -> TrelabError:
    """A tpm2-pytss error on a MID object → the trelab error a user can act on."""
    from tpm.tss import TPM2_RC, TSS2_Exception

    if isinstance(exc, TpmRefused):
        error = exc.base
    elif isinstance(exc, TSS2_Exception):
        error = int(exc.error)
    else:
        return Unavailable(f"{what}: {exc}")
    if error == int(TPM2_RC.LOCKOUT):
        return TpmLockedOut(
            f"{what}: the TPM is in dictionary-attack lockout (too many wrong PINs)"
        )
    if error in (int(TPM2_RC.AUTH_FAIL), int(TPM2_RC.BAD_AUTH)):
        return PinRejected(f"{what}: wrong PIN (the TPM's lockout counter went up)")
    if error in (int(TPM2_RC.POLICY_FAIL), int(TPM2_RC.POLICY), int(TPM2_RC.POLICY_CC)):
        return MidRefused(f"{what}: the TPM refused the policy ({exc})")
    return Unavailable(f"{what}: {exc}")


@dataclass(frozen=True)
class SymmetricSupport:
    """What the TPM offers for E_K (docs/tpm.md: EncryptDecrypt/2 optional, ECB "should not")."""

    encrypt_decrypt2: bool
    encrypt_decrypt: bool
    ecb: bool
    cfb: bool

    @property
    def command(self) -> str | None:
        if self.encrypt_decrypt2:
            return "EncryptDecrypt2"
        return "EncryptDecrypt" if self.encrypt_decrypt else None

    @property
    def default_mode(self) -> Mode:
        """ECB if possible, else the CFB trick, else sealed K."""
        if self.command is None:
            return "sealed"
        if self.ecb:
            return "ecb"
        return "cfb" if self.cfb else "sealed"

    def to_json(self) -> dict[str, Any]:
        return {
            "encrypt_decrypt2": self.encrypt_decrypt2,
            "encrypt_decrypt": self.encrypt_decrypt,
            "ecb": self.ecb,
            "cfb": self.cfb,
            "default_mode": self.default_mode,
        }


def probe_symmetric(conn: TpmConnection) -> SymmetricSupport:
    """Ask the TPM which symmetric commands and AES modes it implements: TPM_CAP_COMMANDS for
    the commands, TPM2_TestParms on an AES-128 SYMCIPHER for each mode.

    Raises:
        Unavailable: the TPM does not answer.
    """
    from tpm.tss import TPM2_ALG, TPM2_CAP, TPM2_CC, TPMT_PUBLIC_PARMS, TSS2_Exception

    esys = conn.esys

    def has_command(code: int) -> bool:
        # TPM_CAP_COMMANDS from ``code``, one entry: the first implemented command ≥ code
        _, caps = esys.get_capability(TPM2_CAP.COMMANDS, code, 1)
        return any(int(a) & 0xFFFF == code for a in caps.data.command)

    try:
        ed2 = has_command(int(TPM2_CC.EncryptDecrypt2))
        ed = has_command(int(TPM2_CC.EncryptDecrypt))
    except TSS2_Exception as exc:
        raise Unavailable(f"cannot list the TPM's commands: {exc}") from None

    def mode_ok(mode: int) -> bool:
        parms = TPMT_PUBLIC_PARMS(type=TPM2_ALG.SYMCIPHER)
        parms.parameters.symDetail.sym.algorithm = TPM2_ALG.AES
        parms.parameters.symDetail.sym.keyBits.aes = 128
        parms.parameters.symDetail.sym.mode.aes = mode
        try:
            esys.test_parms(parms)
        except TSS2_Exception:
            return False
        return True

    return SymmetricSupport(
        encrypt_decrypt2=ed2,
        encrypt_decrypt=ed,
        ecb=mode_ok(int(TPM2_ALG.ECB)),
        cfb=mode_ok(int(TPM2_ALG.CFB)),
    )


def _tpm2b_bytes(value: Any) -> bytes:
    """The payload of a tpm2-pytss TPM2B: straight from its C struct where the object exposes
    it (a few µs), else ``bytes()`` (~13 µs, a hot-path cost at three calls per AKA)."""
    if _ffi is not None:
        try:
            cdata = value._cdata
            return _ffi.buffer(cdata.buffer, cdata.size)[:]  # type: ignore[no-any-return]
        except (AttributeError, TypeError):
            pass
    return bytes(value)


class TpmBlockCipher(BlockCipher):
    """E_K with K a loaded AES SYMCIPHER object; ``calls`` counts TPM commands sent.

    Each command runs in ``authorize()``'s session (a policy session, steps just run), else
    in ``session`` (a kept HMAC session: K's empty authValue), else in the empty-password
    session. ``bus_protected`` says that session encrypts inData and outData (the caller
    set it up so; see the module docstring).

    The hot path is kept short (three calls per AKA on a ~0.25 ms command): tpm2-pytss
    objects are built once, and ECB data up to one TPM buffer goes out in one call.
    """

    def __init__(
        self,
        conn: TpmConnection,
        key_handle: Any,
        *,
        mode: Mode = "ecb",
        command: str = "EncryptDecrypt2",
        authorize: Authorizer | None = None,
        session: Any = None,
        bus_protected: bool = False,
        lean_key: LeanObject | None = None,
        lean_session: Session | None = None,
        lean_policy: LeanPolicy | None = None,
    ) -> None:
        if mode not in ("ecb", "cfb"):
            raise BadInput(f"TPM block cipher mode {mode!r}: expected ecb or cfb")
        if command not in ("EncryptDecrypt2", "EncryptDecrypt"):
            raise BadInput(f"symmetric command {command!r}")
        if bus_protected and command != "EncryptDecrypt2":
            raise BadInput("only TPM2_EncryptDecrypt2 can carry an encrypted inData")
        if authorize is not None and session is not None:
            raise BadInput("a TPM block cipher takes an authorizer or a session, not both")
        if lean_key is not None and (authorize is not None or session is not None):
            raise BadInput("the lean layer runs its own session: no ESYS authorizer or session")
        self._conn = conn
        self._key = key_handle
        self.mode: Mode = mode
        self._authorize = authorize
        self.bus_protected = bus_protected
        esys = conn.esys
        self._send = (
            esys.encrypt_decrypt_2 if command == "EncryptDecrypt2" else esys.encrypt_decrypt
        )
        # the two IVs this class sends, built once (a tpm2-pytss TPM2B costs ~25 µs to make);
        # the lean layer takes them as bytes
        self._empty_iv: Any = b"" if lean_key is not None else TPM2B_IV()
        self._zero_iv: Any = _ZERO_BLOCK if lean_key is not None else TPM2B_IV(_ZERO_BLOCK)
        self._ecb = TPM2_ALG.ECB
        self._cfb = TPM2_ALG.CFB
        self._session = ESYS_TR.PASSWORD if session is None else session
        self._lean_key = lean_key
        self._lean_session = lean_session
        self._lean_policy = lean_policy
        self._lean_send = (
            lean_commands.encrypt_decrypt2
            if command == "EncryptDecrypt2"
            else lean_commands.encrypt_decrypt
        )
        #: which client stack sends the commands: ``lean`` (:mod:`tpm.lean`) or ``esys``
        self.layer = "lean" if lean_key is not None else "esys"
        self.calls = 0

    def __repr__(self) -> str:
        return (
            f"TpmBlockCipher(mode={self.mode!r}, bus_protected={self.bus_protected}, "
            f"layer={self.layer!r}, K=<in TPM>)"
        )

    def _lean_command(self, decrypt: bool, mode: Any, iv: bytes, data: bytes) -> bytes:
        assert self._lean_key is not None
        policy = self._lean_policy
        try:
            if policy is not None:
                policy.before()
            out = self._lean_send(
                self._conn, self._lean_key, data, decrypt=decrypt, mode=int(mode), iv=iv,
                session=self._lean_session, protect=self.bus_protected,
            )  # fmt: skip
        except TpmRefused as exc:
            raise translate(exc, "EncryptDecrypt with K") from None
        except ResponseAuthFailed:
            # the session's nonces can no longer be trusted: flush it; this MID stays unusable
            # until loaded again (the salt key is gone, so no silent unsalted replacement)
            if self._lean_session is not None:
                lean_commands.flush_session(self._conn, self._lean_session)
            raise
        if policy is not None:
            policy.after()
        self.calls += 1
        return out

    def _command(self, decrypt: bool, mode: Any, iv: Any, data: bytes) -> bytes:
        if self._lean_key is not None:
            return self._lean_command(decrypt, mode, iv, data)  # iv: bytes (__init__)
        try:
            if self._authorize is None:  # load-gated: no policy to run
                out, _ = self._send(self._key, decrypt, mode, iv, data, session1=self._session)
            else:
                with self._authorize() as session:
                    out, _ = self._send(self._key, decrypt, mode, iv, data, session1=session)
        except TSS2_Exception as exc:
            raise translate(exc, "EncryptDecrypt with K") from None
        self.calls += 1
        return _tpm2b_bytes(out)

    def encrypt_blocks(self, data: bytes) -> bytes:
        size = len(data)
        if not size or size % _BLOCK:
            raise BadInput(f"E_K input: {size} bytes, expected a multiple of 16")
        if self.mode == "ecb" and size <= _MAX_DATA:
            return self._command(False, self._ecb, self._empty_iv, data)
        out = bytearray()
        step = _MAX_DATA if self.mode == "ecb" else _MAX_DATA - _BLOCK
        for start in range(0, size, step):
            chunk = data[start : start + step]
            if self.mode == "ecb":
                out += self._command(False, self._ecb, self._empty_iv, chunk)
            else:
                # CFB decrypt: IV = 0, C = X1‖…‖Xn‖0 → P_{i+1} = C_{i+1} ⊕ E_K(X_i); P_1
                # (= X1 ⊕ E_K(0)) is dropped. Every X_i sits in inData, none in ivIn.
                ciphertext = chunk + _ZERO_BLOCK
                plain = self._command(True, self._cfb, self._zero_iv, ciphertext)
                mixed = int.from_bytes(plain[_BLOCK:], "big") ^ int.from_bytes(
                    ciphertext[_BLOCK:], "big"
                )
                out += mixed.to_bytes(len(chunk), "big")
        return bytes(out)


class TpmHmac(HmacKeyholder):
    """HMAC-SHA-256 under K, K a loaded keyed-hash HMAC key; ``calls`` counts TPM commands.

    Sessions as :class:`TpmBlockCipher`: ``authorize()``'s policy session per command, else
    the kept ``session`` (a salted HMAC session: K's empty authValue), else the empty
    password. ``bus_protected`` says the session encrypts buffer and outHMAC (the caller set
    decrypt|encrypt on it; :class:`tpm.mid.LoadedMid` does).
    """

    mode: Mode = "hmac"

    def __init__(
        self,
        conn: TpmConnection,
        key_handle: Any,
        *,
        authorize: Authorizer | None = None,
        session: Any = None,
        bus_protected: bool = False,
        command: HmacCommand | None = None,
    ) -> None:
        if authorize is not None and session is not None:
            raise BadInput("a TPM HMAC key takes an authorizer or a session, not both")
        self._key = key_handle
        self._authorize = authorize
        self._session = ESYS_TR.PASSWORD if session is None else session
        self.bus_protected = bus_protected
        if command is None:
            esys, sha256 = conn.esys, TPM2_ALG.SHA256

            def command(key: Any, buffer: bytes, session: Any) -> bytes:
                return _tpm2b_bytes(esys.hmac(key, buffer, sha256, session1=session))

        self._send: HmacCommand = command
        self.calls = 0

    def __repr__(self) -> str:
        return f"TpmHmac(bus_protected={self.bus_protected}, K=<in TPM>)"

    def mac(self, message: bytes) -> bytes:
        if not message or len(message) > _MAX_DATA:
            raise BadInput(f"HMAC input: {len(message)} bytes, expected 1…{_MAX_DATA}")
        try:
            if self._authorize is None:
                out = self._send(self._key, message, self._session)
            else:
                with self._authorize() as session:
                    out = self._send(self._key, message, session)
        except TSS2_Exception as exc:
            raise translate(exc, "HMAC with K") from None
        self.calls += 1
        return out


class _Unsealer:
    """Holds the unseal callback and, inside :meth:`unsealed`, the one unsealed copy of K."""

    def __init__(self, unseal: Callable[[], bytearray]) -> None:
        self._unseal = unseal
        self._held: bytearray | None = None
        self.unseals = 0

    def _fetch(self) -> bytearray:
        key = self._unseal()
        self.unseals += 1
        return key

    @contextlib.contextmanager
    def unsealed(self) -> Iterator[None]:
        """Unseal K once for a whole AKA (several E_K/permutation calls), then zero it."""
        self._held = self._fetch()
        try:
            yield
        finally:
            _wipe(self._held)
            self._held = None

    @contextlib.contextmanager
    def _key(self) -> Iterator[bytearray]:
        if self._held is not None:
            yield self._held
            return
        key = self._fetch()
        try:
            yield key
        finally:
            _wipe(key)


def _wipe(buffer: bytearray) -> None:
    buffer[:] = bytes(len(buffer))


class SealedAes(BlockCipher, _Unsealer):
    """E_K in software with K unsealed from the TPM (mode ``"sealed"``, weaker)."""

    mode: Mode = "sealed"

    def __init__(self, unseal: Callable[[], bytearray]) -> None:
        _Unsealer.__init__(self, unseal)

    def __repr__(self) -> str:
        return "SealedAes(K=<sealed in TPM>)"

    def encrypt_blocks(self, data: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        if not data or len(data) % _BLOCK:
            raise BadInput(f"E_K input: {len(data)} bytes, expected a multiple of 16")
        with self._key() as key:
            if len(key) != 16:
                raise BadInput("sealed K is not 16 bytes")
            # cryptography accepts a bytearray, so no immutable copy of K is made here
            encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305
            out = encryptor.update(data) + encryptor.finalize()
            del encryptor
        return out


class SealedHmac(HmacKeyholder, _Unsealer):
    """HMAC-SHA-256 in software with K unsealed from the TPM (mode ``"sealed"``, weaker):
    the last resort for the HMAC-SHA-256 set, should a TPM refuse TPM2_HMAC."""

    mode: Mode = "sealed"

    def __init__(self, unseal: Callable[[], bytearray]) -> None:
        _Unsealer.__init__(self, unseal)

    def __repr__(self) -> str:
        return "SealedHmac(K=<sealed in TPM>)"

    def mac(self, message: bytes) -> bytes:
        import hashlib
        import hmac

        with self._key() as key:
            if len(key) not in (16, 32):
                raise BadInput("sealed K is not 16 or 32 bytes")
            return hmac.new(key, message, hashlib.sha256).digest()


class SealedKeccak(KeccakKeyholder, _Unsealer):
    """TUAK kernel with K unsealed from the TPM (mode ``"sealed"``: the TPM has no Keccak)."""

    mode: Mode = "sealed"

    def __init__(self, unseal: Callable[[], bytearray], key_bits: int) -> None:
        _Unsealer.__init__(self, unseal)
        if key_bits not in (128, 256):
            raise BadInput(f"TUAK K: {key_bits} bits, expected 128 or 256")
        self.key_bits = key_bits

    def __repr__(self) -> str:
        return f"SealedKeccak(K=<sealed in TPM>, key_bits={self.key_bits})"

    def permute(self, state: bytes, iterations: int) -> bytes:
        if len(state) != 200:
            raise BadInput(f"Keccak state: {len(state)} bytes, expected 200")
        with self._key() as key:
            if len(key) * 8 != self.key_bits:
                raise BadInput("sealed K has the wrong length")
            keyed = bytearray(state)
            field = bytearray(32)
            for i, byte in enumerate(reversed(key)):  # TS 35.231 §5.2: K reversed, zero-padded
                field[i] = byte
            keyed[KEY_FIELD] = field
            try:
                return keccak_f1600(bytes(keyed), iterations)
            finally:
                _wipe(keyed)
                _wipe(field)
