"""Edge: files, operator keys. The MID package: K and OPc/TOPc wrapped off-TPM to one TPM, and
the manifest that says what they are (docs/provisioning.md Part 1 §1.6). No TPM I/O here: the
operator side (DPF stand-in) builds packages from public data it was given, and the device
side checks a package's structure before any TPM command.

Key layout (why, in :mod:`tpm.mid`)::

    EK (RSA-2048, restricted decrypt; certified TRE identity — the package's transport key)
     └─ MID parent: ECC P-256 storage key made by the operator for this MID, wrapped to the EK;
        authPolicy = PolicySecret(SRK) [∧ PolicyPCR for load-gated]; USER role = Import/Load
         ├─ K: AES-128 SYMCIPHER (mode NULL: ECB and CFB) or, for TUAK and the sealed fallback,
         │    a KEYEDHASH sealed-data object; authPolicy by policy kind (below)
         └─ OPc / TOPc: KEYEDHASH sealed data, same gates with PolicyCommandCode(Unseal)

Policy kinds (``kind``):

- ``load`` (load-gated): the parent's PolicyPCR gates Load; K has userWithAuth and an empty
  authValue, so each use is one plain command (fast path). NODA.
- ``use`` (use-gated): K = PolicyPCR ∧ PolicyNV(state == ACTIVE) [∧ PolicyAuthValue]
  ∧ PolicyCommandCode(EncryptDecrypt2); userWithAuth clear; a PIN clears NODA.
- ``authorize`` (operator-updatable): K = PolicyAuthorize(operator key) [∧ PolicyAuthValue] ∧
  PolicyCommandCode(EncryptDecrypt2). The operator signs approved policies (PolicyPCR ∧
  PolicyNV ACTIVE); the trailing PolicyCommandCode means no signed policy can ever authorise
  TPM2_Duplicate of K (docs/tpm.md "PolicyAuthorize trap").

The state PolicyNV reads is the slot's MID_STATE byte, or — when the policy carries a
``lifecycle`` binding (every package the network's DPF builds) — the MID's own lifecycle index,
writable only with the owning SHO's approvals (:class:`tpm.nv.LifecycleIndex`); the package
then carries the owner's approval of the first write (INSTALLED, version 1).

Every object has adminWithPolicy set and no policy names an ADMIN or DUP command, so
ObjectChangeAuth, Certify-by-admin and Duplicate are impossible. The outer wrapper (seed
encrypted to the new parent, HMAC over duplicate and name) gives confidentiality and integrity;
no inner wrapper is used, so the package carries no symmetric key.
"""

from __future__ import annotations

import functools
import hmac
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from tpm import marshal as lean
from tpm import nv
from tpm.mid_errors import PackageRejected
from tpm.policy import (
    CC_ENCRYPT_DECRYPT,
    CC_ENCRYPT_DECRYPT2,
    CC_HMAC,
    CC_UNSEAL,
    PolicyAuthorize,
    PolicyAuthValue,
    PolicyCommandCode,
    PolicyNv,
    PolicyPcr,
    PolicySecret,
    PolicyStep,
    approval_hash,
    format_pcr_selection,
    parse_pcr_selection,
    policy_digest,
)
from trelab.atomic import atomic_write_text
from trelab.errors import BadInput
from trelab.jsontext import load_json

__all__ = [
    "ALGORITHMS",
    "DEFAULT_PCRS",
    "FORMAT",
    "VERSION",
    "AlgorithmName",
    "AlgorithmSpec",
    "Approval",
    "CipherCommand",
    "KForm",
    "LifecycleBinding",
    "MidPolicy",
    "MidSecrets",
    "Package",
    "PolicyKind",
    "Target",
    "WrappedObject",
    "build_package",
    "check_package",
    "load_operator_key",
    "operator_public",
    "read_package",
    "sign_approval",
    "write_package",
]

FORMAT = "trelab.mid-package"
VERSION = 1
DEFAULT_PCRS = "sha256:0,1,2,3,4,5,6,7"
PolicyKind = Literal["load", "use", "authorize"]
KForm = Literal["symcipher", "sealed", "hmac"]
CipherCommand = Literal["EncryptDecrypt2", "EncryptDecrypt"]
_KINDS = ("load", "use", "authorize")
_FORMS = ("symcipher", "sealed", "hmac")
AlgorithmName = Literal["milenage", "tuak", "hmac-sha256"]
ALGORITHMS: tuple[AlgorithmName, ...] = ("milenage", "tuak", "hmac-sha256")
_COMMANDS = {"EncryptDecrypt2": CC_ENCRYPT_DECRYPT2, "EncryptDecrypt": CC_ENCRYPT_DECRYPT}
_IMSI = re.compile(r"^[0-9]{6,15}$")


# ---- manifest pieces -----------------------------------------------------------------------------


def _hex(name: str, value: Any, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise BadInput(f"package: {name} must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise BadInput(f"package: {name} is not hex") from None
    if length is not None and len(data) != length:
        raise BadInput(f"package: {name} is {len(data)} bytes, expected {length}")
    return data


def _int(name: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise BadInput(f"package: {name} must be an integer in {low}…{high}")
    return value


@dataclass(frozen=True)
class AlgorithmSpec:
    """Which AKA algorithm set and its lengths (TS 35.206 Milenage, TS 35.231 TUAK §5.1, or
    the HMAC-SHA-256 set of docs/hmac-aka.md: 128- or 256-bit K, RES 32/64/128 bits)."""

    name: AlgorithmName = "milenage"
    key_bits: int = 128
    mac_bits: int = 64
    res_bits: int = 64
    ck_bits: int = 128
    ik_bits: int = 128
    iterations: int = 1

    def __post_init__(self) -> None:
        from aka import hmac_aka, tuak

        if self.name not in ALGORITHMS:
            raise BadInput(f"algorithm: {self.name!r}, expected one of {', '.join(ALGORITHMS)}")
        if self.name == "milenage":
            if (self.key_bits, self.mac_bits, self.res_bits, self.ck_bits, self.ik_bits) != (
                128,
                64,
                64,
                128,
                128,
            ) or self.iterations != 1:
                raise BadInput("algorithm: Milenage has fixed lengths (128-bit K, 64-bit RES)")
            return
        if self.name == "hmac-sha256":
            if (self.mac_bits, self.ck_bits, self.ik_bits, self.iterations) != (64, 128, 128, 1):
                raise BadInput("algorithm: hmac-sha256 has 64-bit MAC, 128-bit CK and IK")
            if self.key_bits not in (128, 256):
                raise BadInput(f"algorithm: key_bits {self.key_bits}, expected 128 or 256")
            if self.res_bits not in hmac_aka.RES_BITS:
                raise BadInput(
                    f"algorithm: res_bits {self.res_bits}, expected one of {hmac_aka.RES_BITS}"
                )
            return
        checks = (
            ("key_bits", self.key_bits, tuak.K_BITS),
            ("mac_bits", self.mac_bits, tuak.MAC_BITS),
            ("res_bits", self.res_bits, tuak.RES_BITS),
            ("ck_bits", self.ck_bits, tuak.CK_BITS),
            ("ik_bits", self.ik_bits, tuak.IK_BITS),
        )
        for label, value, allowed in checks:
            if value not in allowed:
                raise BadInput(f"algorithm: {label} {value}, expected one of {allowed}")
        if not 1 <= self.iterations <= 1_000_000:
            raise BadInput("algorithm: iterations must be 1…1000000")

    @property
    def secret_bytes(self) -> int:
        """Length of the per-subscriber operator constant: OPc 16 (Milenage), TOPc 32 (TUAK),
        OPc 32 (hmac-sha256)."""
        return 16 if self.name == "milenage" else 32

    @property
    def secret_label(self) -> str:
        return "topc" if self.name == "tuak" else "opc"

    def to_json(self) -> dict[str, Any]:
        if self.name == "milenage":
            return {"name": "milenage"}
        if self.name == "hmac-sha256":
            return {"name": "hmac-sha256", "key_bits": self.key_bits, "res_bits": self.res_bits}
        return {
            "name": "tuak",
            "key_bits": self.key_bits,
            "mac_bits": self.mac_bits,
            "res_bits": self.res_bits,
            "ck_bits": self.ck_bits,
            "ik_bits": self.ik_bits,
            "iterations": self.iterations,
        }

    @classmethod
    def from_json(cls, data: Any) -> AlgorithmSpec:
        if not isinstance(data, dict) or data.get("name") not in ALGORITHMS:
            raise BadInput(
                "package: algorithm must be {'name': 'milenage' | 'tuak' | 'hmac-sha256', …}"
            )
        if data["name"] == "milenage":
            if set(data) != {"name"}:
                raise BadInput("package: algorithm milenage takes no parameters")
            return cls()
        if data["name"] == "hmac-sha256":
            if set(data) != {"name", "key_bits", "res_bits"}:
                raise BadInput("package: algorithm hmac-sha256 takes key_bits and res_bits only")
            values = {
                key: _int(f"algorithm.{key}", data.get(key), 1, 1_000_000)
                for key in ("key_bits", "res_bits")
            }
            return cls(name="hmac-sha256", **values)
        values = {
            key: _int(f"algorithm.{key}", data.get(key), 1, 1_000_000)
            for key in ("key_bits", "mac_bits", "res_bits", "ck_bits", "ik_bits", "iterations")
        }
        return cls(name="tuak", **values)


@dataclass(frozen=True)
class Approval:
    """An operator-signed approved policy for an operator-updatable MID (TPM2_PolicyAuthorize):
    PolicyPCR(selection, pcr_digest) ∧ PolicyNV(MID_STATE[slot] == ACTIVE)."""

    selection: str
    pcr_digest: bytes
    slot: int
    signature: bytes  # DER ECDSA P-256 over aHash (TPM 2.0 Part 3 §23.16)
    policy_ref: bytes = b""

    def steps(self) -> list[PolicyStep]:
        return [PolicyPcr(self.selection, self.pcr_digest), _active(self.slot)]

    def approved_policy(self) -> bytes:
        return policy_digest(self.steps())

    def to_json(self) -> dict[str, Any]:
        return {
            "pcrs": self.selection,
            "pcr_digest": self.pcr_digest.hex(),
            "slot": self.slot,
            "policy_ref": self.policy_ref.hex(),
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Approval:
        if not isinstance(data, dict):
            raise BadInput("package: approval must be an object")
        bank, pcrs = parse_pcr_selection(str(data.get("pcrs", "")))
        return cls(
            selection=format_pcr_selection(bank, pcrs),
            pcr_digest=_hex("approval.pcr_digest", data.get("pcr_digest"), 32),
            slot=_int("approval.slot", data.get("slot"), 0, nv.STATE_SLOTS - 1),
            signature=_hex("approval.signature", data.get("signature")),
            policy_ref=_hex("approval.policy_ref", data.get("policy_ref", "")),
        )


def _active(slot: int) -> PolicyNv:
    return PolicyNv(nv.MID_STATE, nv.state_index_name(), bytes((nv.MidState.ACTIVE,)), slot)


@functools.lru_cache(maxsize=64)
def _authority_name(authority: bytes) -> bytes:
    return _public_name(authority, "lifecycle authority")


@dataclass(frozen=True)
class LifecycleBinding:
    """Who alone may write a MID's lifecycle index: ``authority`` (marshaled TPM2B_PUBLIC of
    the owning SHO's ECDSA P-256 key, as for TPM2_LoadExternal) and ``ref``, the MID's
    policyRef (random, so no two MIDs share an index name)."""

    authority: bytes
    ref: bytes

    @property
    def authority_name(self) -> bytes:
        return _authority_name(self.authority)

    def index(self, slot: int) -> nv.LifecycleIndex:
        return nv.LifecycleIndex(slot, self.authority_name, self.ref)

    def to_json(self) -> dict[str, str]:
        return {"authority": self.authority.hex(), "ref": self.ref.hex()}

    @classmethod
    def from_json(cls, data: Any) -> LifecycleBinding:
        if not isinstance(data, dict):
            raise BadInput("package: policy.lifecycle must be an object")
        ref = _hex("lifecycle.ref", data.get("ref"))
        if not 1 <= len(ref) <= 32:
            raise BadInput("package: lifecycle.ref must be 1…32 bytes")
        return cls(authority=_hex("lifecycle.authority", data.get("authority")), ref=ref)

    @classmethod
    def for_key(cls, key: Any) -> LifecycleBinding:
        """A fresh binding to ``key`` (the owner's EC P-256 private key)."""
        return cls(authority=operator_public(key), ref=os.urandom(16))


@dataclass(frozen=True)
class MidPolicy:
    """What gates K and OPc/TOPc (module docstring); ``selection``/``pcr_digest`` are the PCR
    binding (for ``authorize``: of the initial approval)."""

    kind: PolicyKind
    selection: str
    pcr_digest: bytes
    slot: int
    pin: bool = False
    command: CipherCommand = "EncryptDecrypt2"
    k_form: KForm = "symcipher"
    operator_key: bytes | None = None  # marshaled TPM2B_PUBLIC of the policy-signing key
    approval: Approval | None = None
    lifecycle: LifecycleBinding | None = None

    def __post_init__(self) -> None:
        # from JSON these may be any value, lists and objects too (unhashable: no `in` on them)
        if not isinstance(self.kind, str) or self.kind not in _KINDS:
            raise BadInput(f"policy: {self.kind!r}, expected one of {', '.join(_KINDS)}")
        if not isinstance(self.k_form, str) or self.k_form not in _FORMS:
            raise BadInput(f"policy: K form {self.k_form!r}, expected one of {', '.join(_FORMS)}")
        if not isinstance(self.command, str) or self.command not in _COMMANDS:
            raise BadInput(f"policy: command {self.command!r} unknown")
        if self.pin and self.kind == "load":
            raise BadInput(
                "needs a use or authorize policy (a load-gated K has no policy)", field="pin"
            )
        if not 0 <= self.slot < nv.STATE_SLOTS:
            raise BadInput(f"policy: slot {self.slot} out of range")
        if self.kind == "authorize" and (self.operator_key is None or self.approval is None):
            raise BadInput("policy: authorize needs an operator key and an approval")
        if self.kind == "authorize" and self.lifecycle is not None:
            raise BadInput("policy: an operator-updatable MID keeps its MID_STATE byte")

    def state_index(self) -> nv.LifecycleIndex | None:
        """The MID's own lifecycle index, or None (its MID_STATE byte)."""
        return None if self.lifecycle is None else self.lifecycle.index(self.slot)

    def _active_step(self) -> PolicyNv:
        index = self.state_index()
        return _active(self.slot) if index is None else index.active()

    @property
    def operator_key_name(self) -> bytes:
        if self.operator_key is None:
            raise BadInput("policy: no operator key")
        return _public_name(self.operator_key, "operator key")

    def _use_cc(self) -> int:
        if self.k_form == "hmac":
            return CC_HMAC
        return CC_UNSEAL if self.k_form == "sealed" else _COMMANDS[self.command]

    def parent_steps(self, srk_name: bytes) -> list[PolicyStep]:
        """The parent's USER-role policy: bound to this owner epoch (SRK) [and the PCRs]."""
        steps: list[PolicyStep] = [PolicySecret(srk_name)]
        if self.kind == "load":
            steps.append(PolicyPcr(self.selection, self.pcr_digest))
        return steps

    def k_steps(self) -> list[PolicyStep]:
        return self._steps(self._use_cc(), pin=self.pin)

    def secret_steps(self) -> list[PolicyStep]:
        """OPc/TOPc: same gates as K, no PIN, and only Unseal."""
        return self._steps(CC_UNSEAL, pin=False)

    def _steps(self, cc: int, *, pin: bool) -> list[PolicyStep]:
        if self.kind == "load":
            return []
        steps: list[PolicyStep]
        if self.kind == "use":
            steps = [PolicyPcr(self.selection, self.pcr_digest), self._active_step()]
        else:
            steps = [PolicyAuthorize(self.operator_key_name)]
        if pin:
            steps.append(PolicyAuthValue())
        steps.append(PolicyCommandCode(cc))
        return steps

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "pcrs": self.selection,
            "pcr_digest": self.pcr_digest.hex(),
            "slot": self.slot,
            "pin": self.pin,
            "command": self.command,
            "k_form": self.k_form,
        }
        if self.operator_key is not None:
            data["operator_key"] = self.operator_key.hex()
        if self.approval is not None:
            data["approval"] = self.approval.to_json()
        if self.lifecycle is not None:
            data["lifecycle"] = self.lifecycle.to_json()
        return data

    @classmethod
    def from_json(cls, data: Any) -> MidPolicy:
        if not isinstance(data, dict):
            raise BadInput("package: policy must be an object")
        bank, pcrs = parse_pcr_selection(str(data.get("pcrs", "")))
        pin = data.get("pin", False)
        if not isinstance(pin, bool):
            raise BadInput("package: policy.pin must be true or false")
        op = data.get("operator_key")
        return cls(
            kind=data.get("kind"),  # type: ignore[arg-type]  # validated in __post_init__
            selection=format_pcr_selection(bank, pcrs),
            pcr_digest=_hex("policy.pcr_digest", data.get("pcr_digest"), 32),
            slot=_int("policy.slot", data.get("slot"), 0, nv.STATE_SLOTS - 1),
            pin=pin,
            command=data.get("command", "EncryptDecrypt2"),
            k_form=data.get("k_form", "symcipher"),
            operator_key=None if op is None else _hex("policy.operator_key", op),
            approval=None if data.get("approval") is None else Approval.from_json(data["approval"]),
            lifecycle=None
            if data.get("lifecycle") is None
            else LifecycleBinding.from_json(data["lifecycle"]),
        )


@dataclass(frozen=True)
class WrappedObject:
    """One TPM2_Duplicate-format object: public area, duplicate (outer HMAC + encrypted
    sensitive) and the seed encrypted to the new parent, all marshaled, plus the name."""

    public: bytes
    duplicate: bytes
    seed: bytes
    name: bytes

    def to_json(self) -> dict[str, str]:
        return {
            "public": self.public.hex(),
            "duplicate": self.duplicate.hex(),
            "seed": self.seed.hex(),
            "name": self.name.hex(),
        }

    @classmethod
    def from_json(cls, label: str, data: Any) -> WrappedObject:
        if not isinstance(data, dict):
            raise BadInput(f"package: objects.{label} must be an object")
        return cls(
            public=_hex(f"{label}.public", data.get("public")),
            duplicate=_hex(f"{label}.duplicate", data.get("duplicate")),
            seed=_hex(f"{label}.seed", data.get("seed")),
            name=_hex(f"{label}.name", data.get("name")),
        )


@dataclass(frozen=True)
class Target:
    """The TPM a package is for: its EK public area (transport key) and SRK name (owner epoch)."""

    ek_public: bytes
    srk_name: bytes

    @property
    def ek_name(self) -> bytes:
        return _public_name(self.ek_public, "EK public")


@dataclass(frozen=True)
class Package:
    """A MID package (manifest + wrapped objects). ``secret`` is OPc (Milenage) or TOPc (TUAK)."""

    seq: int
    imsi: str
    algorithm: AlgorithmSpec
    amf: bytes
    sqn_ms: bytes
    policy: MidPolicy
    ek_name: bytes
    srk_name: bytes
    parent: WrappedObject
    k: WrappedObject
    secret: WrappedObject
    install_approval: bytes = b""  # the owner's signature approving (INSTALLED, 1)

    def install(self) -> nv.StateApproval | None:
        """The owner-approved first write of the MID's lifecycle index (None: MID_STATE byte)."""
        index = self.policy.state_index()
        if index is None:
            return None
        return nv.StateApproval(
            index, None, nv.INSTALLED_FIRST, self.install_approval, counter=self.seq - 1
        )

    @property
    def secret_label(self) -> str:
        return self.algorithm.secret_label

    @property
    def mid_id(self) -> str:
        """Short stable id: 12 hex digits of K's name digest."""
        return self.k.name[2:8].hex()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "seq": self.seq,
            "imsi": self.imsi,
            "algorithm": self.algorithm.to_json(),
            "amf": self.amf.hex(),
            "sqn_ms": self.sqn_ms.hex(),
            "policy": self.policy.to_json(),
            "target": {"ek_name": self.ek_name.hex(), "srk_name": self.srk_name.hex()},
            "objects": {
                "parent": self.parent.to_json(),
                "k": self.k.to_json(),
                self.secret_label: self.secret.to_json(),
            },
            **({"install_approval": self.install_approval.hex()} if self.install_approval else {}),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1) + "\n"

    def wire(self) -> bytes:
        """The package as compact JSON, as the DPF sends it (same content as :meth:`dumps`,
        which is for people and files: an indented dump runs the pure-Python encoder)."""
        return json.dumps(self.to_json(), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: Any) -> Package:
        """Parse a package (structure only; :func:`check_package` checks the contents).

        Raises:
            BadInput: not a MID package, unsupported version, missing or malformed fields.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadInput(f"not a MID package (format must be {FORMAT!r})")
        if data.get("version") != VERSION:
            raise BadInput(f"MID package version {data.get('version')!r} not supported")
        imsi = data.get("imsi")
        if not isinstance(imsi, str) or not _IMSI.match(imsi):
            raise BadInput("package: imsi must be 6…15 digits")
        algorithm = AlgorithmSpec.from_json(data.get("algorithm"))
        target = data.get("target")
        objects = data.get("objects")
        if not isinstance(target, dict) or not isinstance(objects, dict):
            raise BadInput("package: target and objects must be objects")
        label = algorithm.secret_label
        if label not in objects:
            raise BadInput(f"package: objects.{label} missing")
        return cls(
            seq=_int("seq", data.get("seq"), 1, 2**64 - 1),
            imsi=imsi,
            algorithm=algorithm,
            amf=_hex("amf", data.get("amf"), 2),
            sqn_ms=_hex("sqn_ms", data.get("sqn_ms"), 6),
            policy=MidPolicy.from_json(data.get("policy")),
            ek_name=_hex("target.ek_name", target.get("ek_name")),
            srk_name=_hex("target.srk_name", target.get("srk_name")),
            parent=WrappedObject.from_json("parent", objects.get("parent")),
            k=WrappedObject.from_json("k", objects.get("k")),
            secret=WrappedObject.from_json(label, objects.get(label)),
            install_approval=_hex("install_approval", data.get("install_approval", "")),
        )


def read_package(path: str | os.PathLike[str]) -> Package:
    """Raises:
    BadInput: unreadable file, not JSON, or not a MID package.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"package {path}: {exc.strerror}") from None
    return Package.from_json(load_json(raw, f"package {path}"))


def write_package(path: str | os.PathLike[str], package: Package) -> None:
    atomic_write_text(path, package.dumps(), mode=0o644)


# ---- TPM structures (plain bytes: tpm.marshal's lean half) ------------------------------------

_FIXED_TPM = 0x00000002
_FIXED_PARENT = 0x00000010
_USER_WITH_AUTH = 0x00000040
_ADMIN_WITH_POLICY = 0x00000080
_NODA = 0x00000400
_RESTRICTED = 0x00010000
_DECRYPT = 0x00020000
_SIGN_ENCRYPT = 0x00040000


def _unmarshal_public(blob: bytes, label: str) -> lean.PublicArea:
    """A whole, canonical TPM2B_PUBLIC (:meth:`tpm.marshal.PublicArea.parse`): one encoding
    per public area, since its name is the hash of exactly these bytes."""
    try:
        return lean.PublicArea.parse(blob, f"package: {label}")
    except BadInput as exc:
        raise PackageRejected(f"{exc} (not a TPM2B_PUBLIC)") from None


def _public_name(blob: bytes, label: str, area: lean.PublicArea | None = None) -> bytes:
    """The name of a marshaled TPM2B_PUBLIC (``area``: it, already parsed)."""
    if area is None:
        area = _unmarshal_public(blob, label)
    try:
        return lean.object_name(area.name_alg, blob[2:])
    except BadInput:
        raise PackageRejected("package: a public area's name algorithm is unknown") from None


def _attrs(*, user: bool, noda: bool) -> int:
    value = _ADMIN_WITH_POLICY
    if user:
        value |= _USER_WITH_AUTH
    if noda:
        value |= _NODA
    return value


# ---- operator key (stand-in for the DPF/SHO policy-signing key) -------------------------------


def load_operator_key(path: str | os.PathLike[str], *, create: bool = False) -> Any:
    """The operator's ECDSA P-256 policy-signing key (PEM, PKCS#8), created if ``create`` and
    absent. A lab stand-in: a real operator keeps it in an HSM, never on the device.

    Raises:
        BadInput: unreadable or not an EC P-256 private key.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    target = Path(path)
    if not target.exists() and create:
        new_key = ec.generate_private_key(ec.SECP256R1())
        pem = new_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write_text(target, pem.decode(), mode=0o600)
        return new_key
    try:
        key = serialization.load_pem_private_key(target.read_bytes(), password=None)
    except OSError as exc:
        raise BadInput(f"operator key {path}: {exc.strerror}") from None
    except (ValueError, TypeError):
        raise BadInput(f"operator key {path}: not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise BadInput(f"operator key {path}: expected an EC P-256 key")
    return key


def operator_public(key: Any) -> bytes:
    """Marshaled TPM2B_PUBLIC of the operator key, private or public (ECDSA-SHA256 signing,
    for LoadExternal)."""
    public_key = key.public_key() if hasattr(key, "public_key") else key
    point = public_key.public_numbers()
    return _ecdsa_public(point.x, point.y)


@functools.lru_cache(maxsize=64)
def _ecdsa_public(x: int, y: int) -> bytes:
    # fixed-size coordinates: a TPM refuses a point whose leading zero bytes were dropped
    # (TPM_RC_KEY), and the name would differ from a padded one
    return lean.PublicArea(
        lean.ALG_ECC,
        lean.ALG_SHA256,
        _SIGN_ENCRYPT | _USER_WITH_AUTH,
        scheme=lean.Scheme(lean.ALG_ECDSA, (lean.ALG_SHA256,)),
        curve=lean.ECC_NIST_P256,
        unique=(x.to_bytes(32, "big"), y.to_bytes(32, "big")),
    ).marshal_sized()


def sign_approval(
    key: Any, selection: str, pcr_digest: bytes, slot: int, policy_ref: bytes = b""
) -> Approval:
    """The operator approves PolicyPCR(selection, pcr_digest) ∧ MID_STATE[slot] == ACTIVE:
    ECDSA over aHash = H(approvedPolicy ‖ policyRef) (TPM 2.0 Part 3 §23.16)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils

    bank, pcrs = parse_pcr_selection(selection)
    unsigned = Approval(format_pcr_selection(bank, pcrs), pcr_digest, slot, b"", policy_ref)
    a_hash = approval_hash(unsigned.approved_policy(), policy_ref)
    signature = key.sign(a_hash, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    return replace(unsigned, signature=signature)


# ---- building (operator side) ----------------------------------------------------------------


@dataclass(frozen=True)
class MidSecrets:
    """What the operator wraps; never printed."""

    k: bytes = field(repr=False)
    secret: bytes = field(repr=False)  # OPc (16 bytes) or TOPc (32 bytes)
    pin: bytes | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return "MidSecrets(<hidden>)"


def _wrap(parent: lean.PublicArea, public: lean.PublicArea, sensitive: bytes) -> WrappedObject:
    sized, name = public.sized_and_name()
    duplicate, seed = lean.duplicate(parent, name, sensitive)
    return WrappedObject(public=sized, duplicate=duplicate, seed=seed, name=name)


def _secret_object(
    kind: int,
    secret: bytes,
    steps: list[PolicyStep],
    *,
    auth: bytes | None,
    attributes: int = 0,
    symmetric: lean.SymDef = lean.NO_SYMMETRIC,
    scheme: lean.Scheme = lean.NULL_SCHEME,
) -> tuple[bytes, lean.PublicArea]:
    """A symmetric key or keyed-hash object holding ``secret``: its TPM2B_SENSITIVE (fresh
    seedValue, ``auth`` as authValue) and public area (unique = H(seedValue ‖ secret))."""
    seed_value = os.urandom(32)
    public = lean.PublicArea(
        kind,
        lean.ALG_SHA256,
        attributes | _attrs(user=not steps, noda=auth is None),
        policy_digest(steps) if steps else b"",
        symmetric=symmetric,
        scheme=scheme,
        unique=(lean.sym_unique(lean.ALG_SHA256, secret, seed_value),),
    )
    private = lean.sensitive(kind, secret, auth_value=auth or b"", seed_value=seed_value)
    return private, public


def _sealed(
    secret: bytes, steps: list[PolicyStep], *, auth: bytes | None
) -> tuple[bytes, lean.PublicArea]:
    return _secret_object(lean.ALG_KEYEDHASH, secret, steps, auth=auth)


def _hmac_key(
    key: bytes, steps: list[PolicyStep], *, auth: bytes | None
) -> tuple[bytes, lean.PublicArea]:
    """K as a keyed-hash HMAC-SHA-256 signing key (docs/hmac-aka.md §6): TPM2_HMAC computes
    with it, TPM2_Unseal refuses it (sign set, decrypt clear)."""
    return _secret_object(
        lean.ALG_KEYEDHASH,
        key,
        steps,
        auth=auth,
        attributes=_SIGN_ENCRYPT,
        scheme=lean.Scheme(lean.ALG_HMAC, (lean.ALG_SHA256,)),
    )


def build_package(
    target: Target,
    secrets: MidSecrets,
    *,
    seq: int,
    imsi: str,
    algorithm: AlgorithmSpec,
    amf: bytes,
    sqn_ms: bytes,
    policy: MidPolicy,
    owner_key: Any = None,
) -> Package:
    """Wrap K and OPc/TOPc for ``target`` under a fresh per-MID parent (operator side).
    ``owner_key`` (the EC P-256 private key named by ``policy.lifecycle``) signs the approval
    of the lifecycle index's first write, bound to MID_CTR == ``seq`` − 1.

    Raises:
        BadInput: lengths or options that do not fit together.
    """
    from cryptography.hazmat.primitives.asymmetric import ec

    if not _IMSI.match(imsi):
        raise BadInput("6…15 digits", field="imsi")
    if len(amf) != 2 or len(sqn_ms) != 6:
        raise BadInput("AMF must be 2 bytes and SQN_MS 6 bytes")
    if len(secrets.k) * 8 != algorithm.key_bits:
        raise BadInput(f"{len(secrets.k)} bytes, expected {algorithm.key_bits // 8}", field="k")
    want = algorithm.secret_bytes
    if len(secrets.secret) != want:
        raise BadInput(f"OPc/TOPc: {len(secrets.secret)} bytes, expected {want}")
    if algorithm.name == "tuak" and policy.k_form != "sealed":
        raise BadInput("TUAK K must be sealed: the TPM has no Keccak (use --form sealed)")
    if (policy.k_form == "hmac") != (algorithm.name == "hmac-sha256") and (
        policy.k_form != "sealed"
    ):
        raise BadInput(
            "K form hmac is for the hmac-sha256 algorithm set (and it takes hmac or sealed)"
        )
    if (secrets.pin is not None) != policy.pin:
        raise BadInput("PIN given but the policy has no PIN (or the reverse)")
    if secrets.pin is not None and not 1 <= len(secrets.pin) <= 32:
        raise BadInput("1…32 bytes", field="pin")
    index = policy.state_index()
    install = b""
    if index is not None:
        if owner_key is None or policy.lifecycle is None:
            raise BadInput("a lifecycle-bound policy needs the owner's key to approve INSTALLED")
        if operator_public(owner_key) != policy.lifecycle.authority:
            raise BadInput("the owner key is not the policy's lifecycle authority")
        install = nv.StateApproval.sign(
            owner_key, index, None, nv.INSTALLED_FIRST, counter=seq - 1
        ).signature
    ek_public = _unmarshal_public(target.ek_public, "EK public")

    # The per-MID parent: a fresh ECC P-256 storage key; its private half is dropped here.
    # Fixed-size coordinates and d: the TPM feeds the stored x to KDFe while the wrap pads it
    # to 32 bytes, so a parent with a short x would make every child import fail.
    numbers = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    parent_public = lean.PublicArea(
        lean.ALG_ECC,
        lean.ALG_SHA256,
        _RESTRICTED | _DECRYPT | _NODA | _ADMIN_WITH_POLICY,
        policy_digest(policy.parent_steps(target.srk_name)),
        symmetric=lean.AES128_CFB,
        curve=lean.ECC_NIST_P256,
        unique=(
            numbers.public_numbers.x.to_bytes(32, "big"),
            numbers.public_numbers.y.to_bytes(32, "big"),
        ),
    )
    parent_sensitive = lean.sensitive(
        lean.ALG_ECC,
        numbers.private_value.to_bytes(32, "big"),
        seed_value=os.urandom(32),  # storage keys need a seed
    )
    del numbers

    k_steps = policy.k_steps()
    if policy.k_form == "symcipher":
        # mode NULL: the command picks ECB or CFB
        k_sensitive, k_public = _secret_object(
            lean.ALG_SYMCIPHER,
            secrets.k,
            k_steps,
            auth=secrets.pin,
            attributes=_DECRYPT | _SIGN_ENCRYPT,
            symmetric=lean.SymDef(lean.ALG_AES, 8 * len(secrets.k), lean.ALG_NULL),
        )
    elif policy.k_form == "hmac":
        k_sensitive, k_public = _hmac_key(secrets.k, k_steps, auth=secrets.pin)
    else:
        k_sensitive, k_public = _sealed(secrets.k, k_steps, auth=secrets.pin)
    s_sensitive, s_public = _sealed(secrets.secret, policy.secret_steps(), auth=None)

    return Package(
        seq=seq,
        imsi=imsi,
        algorithm=algorithm,
        amf=amf,
        sqn_ms=sqn_ms,
        policy=policy,
        ek_name=_public_name(target.ek_public, "EK public", ek_public),
        srk_name=target.srk_name,
        parent=_wrap(ek_public, parent_public, parent_sensitive),
        k=_wrap(parent_public, k_public, k_sensitive),
        secret=_wrap(parent_public, s_public, s_sensitive),
        install_approval=install,
    )


# ---- checking (device side, before any TPM command) ------------------------------------------


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise PackageRejected(f"package: {message}")


def _check_object(
    label: str, obj: WrappedObject, steps: list[PolicyStep], *, kind: str, pin: bool
) -> lean.PublicArea:
    area = _unmarshal_public(obj.public, f"{label} public area")
    _expect(area.name_alg == lean.ALG_SHA256, f"{label} name algorithm is not SHA-256")
    _expect(
        hmac.compare_digest(_public_name(obj.public, label, area), obj.name),
        f"{label} name does not match its public area (altered)",
    )
    attrs = area.attributes
    _expect(
        not attrs & (_FIXED_TPM | _FIXED_PARENT),
        f"{label} has fixedTPM/fixedParent (cannot be imported)",
    )
    _expect(bool(attrs & _ADMIN_WITH_POLICY), f"{label} lacks adminWithPolicy")
    expected_policy = policy_digest(steps) if steps else b""
    _expect(
        hmac.compare_digest(area.auth_policy, expected_policy),
        f"{label} authPolicy differs from the policy the manifest describes",
    )
    user = bool(attrs & _USER_WITH_AUTH)
    _expect(user == (not steps), f"{label}: userWithAuth must be set only without a policy")
    noda = bool(attrs & _NODA)
    _expect(noda != pin, f"{label}: NODA must be set exactly when there is no PIN")
    if kind == "sealed":
        _expect(area.type == lean.ALG_KEYEDHASH, f"{label} is not sealed data")
        _expect(
            not attrs & (_SIGN_ENCRYPT | _DECRYPT),
            f"{label} is a keyed-hash key, not sealed data",
        )
    elif kind == "hmac":
        _expect(area.type == lean.ALG_KEYEDHASH, f"{label} is not a keyed-hash key")
        _expect(
            attrs & (_SIGN_ENCRYPT | _DECRYPT | _RESTRICTED) == _SIGN_ENCRYPT,
            f"{label} is not an unrestricted HMAC signing key",
        )
        _expect(
            area.scheme == lean.Scheme(lean.ALG_HMAC, (lean.ALG_SHA256,)),
            f"{label} is not an HMAC-SHA-256 key",
        )
    elif kind == "symcipher":
        _expect(area.type == lean.ALG_SYMCIPHER, f"{label} is not a symmetric key")
        sym = area.symmetric
        _expect(sym.algorithm == lean.ALG_AES and sym.key_bits == 128, f"{label} is not AES-128")
    else:  # parent
        _expect(area.type == lean.ALG_ECC, "parent is not an ECC key")
        _expect(
            attrs & (_RESTRICTED | _DECRYPT) == _RESTRICTED | _DECRYPT,
            "parent is not a storage key (restricted decrypt)",
        )
    return area


def check_package(package: Package) -> None:
    """Device-side structural checks, before any TPM command: names match public areas, the
    objects carry exactly the authPolicy and attributes the manifest claims (so a K with
    userWithAuth cannot pose as use-gated), and sizes fit the algorithm.

    Raises:
        PackageRejected: naming the failed check.
    """
    policy = package.policy
    if policy.kind == "authorize" and policy.approval is not None:
        _expect(policy.approval.slot == policy.slot, "approval is for another slot")
    if package.algorithm.name == "tuak":
        _expect(policy.k_form == "sealed", "TUAK K must be sealed data")
    if package.algorithm.name == "hmac-sha256":
        _expect(policy.k_form in ("hmac", "sealed"), "hmac-sha256 K must be an HMAC key or sealed")
    else:
        _expect(policy.k_form != "hmac", "an HMAC-key K serves only the hmac-sha256 set")
    if policy.lifecycle is not None:
        _expect(bool(package.install_approval), "no owner approval for the lifecycle index")
        policy.lifecycle.authority_name  # noqa: B018 - raises PackageRejected if malformed
    _check_object(
        "parent", package.parent, policy.parent_steps(package.srk_name), kind="parent", pin=False
    )
    _check_object("k", package.k, policy.k_steps(), kind=policy.k_form, pin=policy.pin)
    _check_object(
        package.secret_label, package.secret, policy.secret_steps(), kind="sealed", pin=False
    )
