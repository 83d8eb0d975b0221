"""Edge: TPM, processes, filesystem. TPM TREs for the benchmark harness.

Rows (one provider each; ``cases()`` holds exactly one raw case, the bare TPM command):

- ``tpm (ecb, load-gated)`` — K an AES key in the TPM, PCR policy checked at TPM2_Load; each
  E_K one TPM2_EncryptDecrypt2 (ECB). Raw: one EncryptDecrypt2 of one block. Also quote,
  verify, quote+verify (ECC P-256 AK), the bare TPM2_Quote (through ESAPI, and as bytes sent
  on the transport) and the bare signature verification (quote+verify's reference: the bare
  quote as bytes + the bare verification), mid-import and provisioning (the host agent's full
  provisioning against the in-process operator side, :func:`bench.provision_bench.operator_side`).
- ``tpm (cfb-only)`` — the same MID kind, E_K by one CFB *decrypt* per call (the fallback for
  TPMs that refuse ECB), forced on a TPM that also has ECB. Raw: one EncryptDecrypt2 CFB call.
- ``tpm (use-gated policy)`` — K's own policy (PolicyPCR ∧ PolicyNV MID_STATE = ACTIVE ∧
  PolicyCommandCode) re-run before every E_K. Raw: the bare commands one use-gated E_K needs,
  PolicyPCR + PolicyNV + PolicyCommandCode + EncryptDecrypt2, in a session started once.
- ``tpm (sealed K)`` — the weaker fallback: K sealed, unsealed over a salted, response-encrypted
  session once per AKA, AES/Keccak in software. Raw: one TPM2_Unseal (empty-password session).
  TUAK runs here: no TPM has Keccak, so a TUAK K is always sealed (:mod:`tpm.keyholder`).
- ``tpm part NAME`` — the bench swtpm presented as a real part by the TPM proxy
  (:mod:`firmware_stubs.tpm_proxy`, one process per row in front of the bench swtpm): MIDs
  provisioned as trelab does by default on that part (sealed K where it lacks
  TPM2_EncryptDecrypt2), AKA in the mode it allows. Raw: the bare command of that mode through
  the proxy; cases: the real-path AKA, the K-resident AKA and (symmetric K) one bus-protected
  E_K. The proxy's own cost is in every case of the row (raw included), so the same-run ratio
  stays honest; times are swtpm's, not the part's.
- ``tpm (physical)`` — ``/dev/tpmrm0`` (or ``tpm0``) when ``lab.detect`` finds one and
  ``TRELAB_HARDWARE_TPM=1`` allows NV writes on the chip; same cases as the ECB row in the mode
  the chip supports, no mid-import (each import uses a MID_STATE slot for good).

Operations: ``aka-milenage`` is the real path, :func:`tpm.aka.authenticate` as ``trelab tpm
aka`` runs it minus process start: registry lock and REG_CTR check, load parent → OPc → K, three
E_K, the new SQN state committed (file fsync + one REG_CTR NV write) *before* RES, flush.
``aka-milenage (no registry)`` keeps K loaded and the SQN state in memory: the TPM's share.
``aka-hmac-sha256`` (the full row and the part rows) is the same real path for a MID of the
HMAC-SHA-256 set, K a TPM HMAC key (five TPM2_HMAC in the salted session): the rows
``usim in-process (…)`` of :mod:`bench.tres.uicc` run the same set on the emulated card.

Bus protection (threat 9): both run as ``trelab tpm aka`` does by default, E_K's inData and
outData parameter-encrypted in a session salted to the MID parent (:class:`tpm.mid.LoadedMid`).
The symmetric-K rows add the opt-out, labelled ``(no bus protection)``
(``--no-bus-protection``: E_K in clear on the bus, the pre-threat-9 behaviour), so the report
shows what the protection costs, and ``e_k (bus-protected)``: one E_K of one block in the
protected session, against the raw bare command. Sealed K is always unsealed over the
protected session (the opt-out does not apply).

Where: the lab rows run on a *bench TPM* — swtpm manufactured for this run in a temp directory,
with the lab's binary and setup — shared by the four rows and stopped when the last closes. Not
on the lab's own TPM because provisioning uses MID_STATE slots for good (DELETED is terminal,
256 slots): a few runs a day would exhaust the lab TPM and fill its registry and audit log.
swtpm holds three loaded objects and a persistent key in use takes one, so nothing stays loaded
between samples: cases that need K resident load it in their untimed ``setup``.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from aka.algorithm import AkaAlgorithm
from aka.hmac_aka import HmacAka, SoftwareHmac
from aka.hss import AuthVector, Hss, Subscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnState
from aka.suci import Profile
from aka.tuak import SoftwareKeccak, Tuak
from aka.usim import AkaSuccess, AkaSyncFailure, usim_authenticate
from lab import swtpm
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.keyholder import Mode, SymmetricSupport, probe_symmetric, translate
from tpm.mid import Layer, LoadedMid, delete_mid, import_package, wrap_for_device
from tpm.mid_errors import UnknownMid
from tpm.package import AlgorithmSpec, MidSecrets
from tpm.registry import MidRecord, Registry
from tpm.suci import TpmAgreement
from tpm.tss import TSS2_Exception
from trelab.errors import LocalProtocolError, TrelabError, Unavailable

from ..breakdown import observe_tpm
from ..harness import Case
from .five_g import HomeKeys, me_5g, suci_once
from .pool import VectorPool

__all__ = [
    "HARDWARE_ENV",
    "PHYSICAL",
    "QUOTE_PCRS",
    "VARIANTS",
    "TpmSite",
    "TpmTre",
    "TpmVariant",
    "lab_tpm_factory",
    "physical_tpm_factory",
    "swtpm_version",
]

HARDWARE_ENV = "TRELAB_HARDWARE_TPM"
QUOTE_PCRS = "sha256:0,1,2,3,16"  # what the PVA asks for in the lab (tpm/attest defaults)
_AMF = b"\x80\x00"
#: the HMAC-SHA-256 operator set as the bench runs it on the TPM and on the card: 256-bit K
HMAC_SPEC = AlgorithmSpec(name="hmac-sha256", key_bits=128, res_bits=64)
_IMSI_BASE = 1_019_999_000  # bench MIDs: 00101 test network, 10 digits from here


@dataclass(frozen=True)
class TpmVariant:
    """One TPM row: the MID kind it provisions and the keyholder mode it forces (None: what
    the TPM supports, :func:`tpm.keyholder.SymmetricSupport.default_mode`)."""

    tre: str
    kind: Literal["load", "use"]
    form: Literal["symcipher", "sealed"] | None
    mode: Mode | None
    policy: str
    full: bool = False  # also aka-resync, attestation and (bench TPM only) mid-import


VARIANTS: dict[str, TpmVariant] = {
    "ecb": TpmVariant(
        "tpm (ecb, load-gated)", "load", "symcipher", "ecb",
        "load-gated: PCR policy at TPM2_Load; K used with the empty password", full=True,
    ),
    "cfb": TpmVariant(
        "tpm (cfb-only)", "load", "symcipher", "cfb",
        "load-gated; E_K by the CFB-decrypt trick, forced on a TPM that also offers ECB",
    ),
    "use": TpmVariant(
        "tpm (use-gated policy)", "use", "symcipher", "ecb",
        "use-gated: PolicyPCR ∧ PolicyNV(MID_STATE = ACTIVE) ∧ PolicyCommandCode before every E_K",
    ),
    "sealed": TpmVariant(
        "tpm (sealed K)", "load", "sealed", "sealed",
        "K sealed; unsealed over a salted, response-encrypted session once per AKA (K in host "
        "memory during the AKA: weaker)",
    ),
}  # fmt: skip
PHYSICAL = TpmVariant(
    "tpm (physical)",
    "load",
    None,
    None,
    "load-gated; the fastest mode the chip supports",
    full=True,
)


def part_variant(name: str, part: str) -> TpmVariant:
    """The row of a real-part profile: load-gated, K in the form trelab's default takes there."""
    return TpmVariant(
        f"tpm part {name}", "load", None, None,
        f"{part}: load-gated, K as trelab provisions it by default on this part",
    )  # fmt: skip


@functools.cache
def swtpm_version() -> str:
    """First line of ``swtpm --version`` (e.g. "TPM emulator version 0.7.1, …")."""
    try:
        done = subprocess.run(
            ["swtpm", "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    line = (done.stdout or done.stderr).strip().splitlines()
    return line[0].split(", Copyright")[0] if line else "unknown"


# ---- where the TPM is ----------------------------------------------------------------------


@dataclass
class TpmSite:
    """The TPM a provider measures: its TCTI, *its* registry (REG_CTR is TPM-wide: one registry
    per TPM), whether MID slots may be spent freely (a TPM made for this run), and who frees it.
    ``pid`` and ``path`` name the bench swtpm process and its directory (None for hardware);
    ``ca_bundle`` is its manufacturer CA (root + issuer PEM) for an operator's DRF."""

    tcti: str
    registry: Registry
    scratch: bool
    where: str
    release: Callable[[], None]
    pid: int | None = None
    path: Path | None = None
    ca_bundle: Path | None = None


class _BenchTpm:
    """A swtpm manufactured for this run (same binary and setup as the lab's), shared by every
    lab TPM row; stopped and deleted when the last user releases it."""

    _current: ClassVar[_BenchTpm | None] = None

    def __init__(self) -> None:
        swtpm.require_tools()
        self.dir = Path(tempfile.mkdtemp(prefix="trelab-bench-tpm-"))
        self.paths = swtpm.SwtpmPaths(self.dir)
        self.users = 0
        self.stopped = False
        try:
            swtpm.manufacture(self.paths)
            self.process = self._start()
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        # swtpm runs as a daemon: should a caller never release it, stop it at exit anyway
        atexit.register(self._stop)
        self.tcti = swtpm.tcti(self.process.port)
        self.ca_bundle: Path | None = None

    def exported_ca(self) -> Path:
        """The manufacturer CA bundle (exported once, after checking the EK certificates)."""
        if self.ca_bundle is None:
            nv_certs = swtpm.read_nv_certificates(self.process.port)
            self.ca_bundle = swtpm.export_ca(self.paths, nv_certs).bundle
        return self.ca_bundle

    def _start(self) -> swtpm.SwtpmProcess:
        for attempt in range(3):
            try:
                return swtpm.start(self.paths, swtpm.find_free_port_pair())
            except swtpm.PortInUse:  # lost a race for the pair: pick another
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    @classmethod
    def acquire(cls) -> TpmSite:
        """The shared bench TPM (made on first use) as a site; release it when done."""
        bench = cls._current
        if bench is None:
            bench = cls._current = cls()
        bench.users += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                bench._release()

        return TpmSite(
            tcti=bench.tcti,
            registry=Registry(bench.dir / "mids.json"),
            scratch=True,
            where="bench swtpm made for this run (the lab's binary and setup; lab TPM untouched)",
            release=release,
            pid=bench.process.pid,
            path=bench.dir,
            ca_bundle=bench.exported_ca(),
        )

    def _release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            self._stop()

    def _stop(self) -> None:
        if _BenchTpm._current is self:
            _BenchTpm._current = None
        if self.stopped:
            return
        self.stopped = True
        atexit.unregister(self._stop)
        swtpm.stop(self.paths, self.process.pid, self.process.start)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- one bench MID and the network side that knows its K ------------------------------------


class _BenchMid:
    """A MID provisioned for the benchmark (fresh random K, OPc/TOPc) and an HSS holding the
    same K in software to make its vectors."""

    def __init__(
        self,
        conn: TpmConnection,
        registry: Registry,
        *,
        algorithm: AlgorithmSpec,
        kind: str,
        form: str,
        ahead: int,
    ) -> None:
        self.imsi = _bench_imsi()
        k = os.urandom(algorithm.key_bits // 8)
        secret = os.urandom(16 if algorithm.name == "milenage" else 32)
        package = wrap_for_device(
            conn, MidSecrets(k, secret), imsi=self.imsi, algorithm=algorithm, amf=_AMF,
            sqn_ms=bytes(6), kind=kind, form=form,
        )  # fmt: skip
        self.record: MidRecord = import_package(conn, registry, package, activate=True)
        network: AkaAlgorithm
        if algorithm.name == "milenage":
            network = Milenage(SoftwareAes(k), secret)
        elif algorithm.name == "hmac-sha256":
            network = HmacAka(SoftwareHmac(k), secret, res_bits=algorithm.res_bits)
        else:
            network = Tuak(SoftwareKeccak(k), secret)
        self.hss = Hss(os.urandom)
        self.hss.add(Subscriber(self.imsi, network, _AMF))
        self.pool = VectorPool(self.hss, self.imsi, ahead=ahead)
        self.pool.top_up()

    @property
    def mid(self) -> str:
        return self.record.mid


_serial = iter(range(1, 10**9))


def _layer_text(layer: str) -> str:
    if layer == "esys":
        return "every command through ESYS (tpm2-pytss): the reference for the lean layer"
    return (
        "load-gated MIDs' sessions and commands through the lean layer (tpm.lean), policy-gated "
        "ones through ESYS"
    )


def _bench_imsi() -> str:
    """A fresh IMSI in the 001-01 test network for one bench MID."""
    return f"00101{_IMSI_BASE + next(_serial):010d}"


def _expect_success(result: Any, what: str) -> None:
    if not isinstance(result, AkaSuccess):
        raise LocalProtocolError(f"{what}: the bench AKA gave {result.result}, not success")


def _tss(call: Callable[[], Any], what: str) -> Any:
    """Run ESAPI calls; a TPM refusal becomes the trelab error the harness records."""
    try:
        return call()
    except TSS2_Exception as exc:
        raise translate(exc, what) from None


class _Resident:
    """A MID loaded in an untimed ``setup`` and flushed in ``teardown``."""

    def __init__(
        self,
        conn: TpmConnection,
        record: MidRecord,
        mode: Mode,
        *,
        bus_protection: bool = True,
        layer: Layer = "lean",
    ) -> None:
        self._conn, self._record, self._mode = conn, record, mode
        self._bus_protection = bus_protection
        self._layer: Layer = layer
        self._scope: contextlib.ExitStack | None = None
        self.loaded: LoadedMid | None = None

    def load(self) -> None:
        self.unload()
        scope = contextlib.ExitStack()
        self.loaded = scope.enter_context(
            LoadedMid(
                self._conn,
                self._record,
                mode=self._mode,
                bus_protection=self._bus_protection,
                layer=self._layer,
            )
        )
        self._scope = scope

    def get(self) -> LoadedMid:
        if self.loaded is None:
            raise LocalProtocolError("bench: MID not loaded (setup did not run)")
        return self.loaded

    def key(self) -> Any:
        # LoadedMid keeps K's ESYS handle private; the raw case needs it for the bare command
        return self.get()._key

    def unload(self) -> None:
        scope, self._scope, self.loaded = self._scope, None, None
        if scope is not None:
            scope.close()


# ---- the provider --------------------------------------------------------------------------


class TpmTre:
    """One TPM row (see module docstring). Builds its MIDs on construction, so a TPM that
    cannot run the row fails here and the harness reports it as not run.

    Raises (constructor):
        Unavailable: the TPM does not answer or lacks what the row needs.
    """

    def __init__(
        self, variant: TpmVariant, site: TpmSite, *, quick: bool, allow_import: bool
    ) -> None:
        self.tre = variant.tre
        self.variant = variant
        self.site = self._site = site
        self._quick = quick
        self._allow_import = allow_import and site.scratch
        self._stack = contextlib.ExitStack()
        self._stack.callback(site.release)
        self._mids: list[_BenchMid] = []
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- construction --------------------------------------------------------------------------
    def _open(self) -> None:
        from tpm.info import probe

        site, variant = self._site, self.variant
        conn = self._conn = self._stack.enter_context(TpmConnection(site.tcti))
        if not site.scratch:  # a real TPM: delete what the bench installed, whatever happens
            self._stack.callback(self._delete_mids)
        self._info = probe(conn)
        self._symmetric: SymmetricSupport = probe_symmetric(conn)
        form = variant.form or ("symcipher" if self._symmetric.command else "sealed")
        if variant.tre.startswith("tpm part "):  # as trelab's default does on that part
            form = "symcipher" if self._symmetric.encrypt_decrypt2 else "sealed"
        if form == "symcipher" and self._symmetric.command is None:
            raise Unavailable("this TPM has no EncryptDecrypt/EncryptDecrypt2 command")
        ahead = 8 if self._quick else 32
        self._milenage = self._provision(AlgorithmSpec(), form, ahead)
        self._tuak = (
            self._provision(AlgorithmSpec(name="tuak"), "sealed", ahead)
            if form == "sealed"
            else None
        )
        # the HMAC-SHA-256 set (K a TPM HMAC key, TPM2_HMAC): on the full row and on each part,
        # beside the UICC's row for the same set
        self._hmac = (
            self._provision(HMAC_SPEC, "hmac", ahead)
            if variant.full or variant.tre.startswith("tpm part ")
            else None
        )
        # Bus protection needs EncryptDecrypt2 (a v1-only chip runs the opt-out only, and says so)
        self.bus_protection = form == "sealed" or self._symmetric.encrypt_decrypt2
        # The first AKA on the real path: proves the row works and gives the mode that ran and
        # a vector the registry has seen (replayed by aka-resync).
        self._replay = self._milenage.pool.take()
        outcome = authenticate(
            conn, site.registry, self._milenage.mid, self._replay.rand, self._replay.autn,
            mode=variant.mode, bus_protection=self.bus_protection,
        )  # fmt: skip
        _expect_success(outcome.result, self.tre)
        self.mode: Mode = outcome.mode
        self._ak: Any = None
        if variant.full:
            from tpm.identity import ensure_ak
            from tpm.quote import Quoter

            self._ak, _ = ensure_ak(conn, "ecc")
            self._quoter = self._stack.enter_context(Quoter(conn, self._ak))

    def _provision(self, algorithm: AlgorithmSpec, form: str, ahead: int) -> _BenchMid:
        mid = _BenchMid(
            self._conn, self._site.registry, algorithm=algorithm, kind=self.variant.kind,
            form=form, ahead=ahead,
        )  # fmt: skip
        self._mids.append(mid)
        return mid

    def _delete_mids(self) -> None:
        for mid in reversed(self._mids):
            with contextlib.suppress(TrelabError):
                delete_mid(self._conn, self._site.registry, mid.mid)
        self._mids.clear()

    # -- TreProvider ---------------------------------------------------------------------------
    def environment(self) -> dict[str, Any]:
        info, sym = self._info, self._symmetric
        env: dict[str, Any] = {
            "kind": "tpm",
            "tpm": " ".join(f"{info.manufacturer} {info.vendor}".split()),
            "firmware": info.firmware,
            "spec": f"{info.spec_revision} ({info.spec_date})",
            "tcti": self._site.tcti,
            "where": self._site.where,
            "aka_mode": self.mode,
            "mid_policy": self.variant.policy,
            "k_form": self._milenage.record.policy.k_form,
            "symmetric": f"{sym.command or 'none'}; ECB {'yes' if sym.ecb else 'no'}, "
            f"CFB {'yes' if sym.cfb else 'no'}",
            "registry": "one NV write (REG_CTR) per accepted AKA on the real path",
            "bus_protection": self._bus_text(),
        }
        if self._site.tcti.startswith("swtpm:"):
            env["swtpm"] = swtpm_version()
        if self._ak is not None:
            env["ak"] = f"ECC P-256 at 0x{self._ak.handle:08x}; quotes over {QUOTE_PCRS}"
        return env

    def _bus_text(self) -> str:
        if self.mode == "sealed":
            return (
                "always: K and OPc unsealed over a session salted to the MID parent, responses "
                "encrypted (no opt-out: K itself would cross the bus)"
            )
        if not self.bus_protection:
            return (
                "impossible here (TPM2_EncryptDecrypt only: inData is not its first parameter); "
                "every AKA case is the opt-out, E_K in clear on the bus"
            )
        return (
            "on (default): E_K inData/outData AES-128-CFB parameter-encrypted in a session "
            "salted to the MID parent; the '(no bus protection)' cases are the opt-out"
        )

    def cases(self, quick: bool) -> list[Case]:
        many = 5 if quick else 20  # batch for sub-millisecond commands
        few = 2 if quick else 5  # for an AKA with K resident
        mid = self._milenage
        cases = [self._raw_case(many), self._real_aka_case("aka-milenage", mid)]
        if self._hmac is not None:
            cases.append(self._real_aka_case("aka-hmac-sha256", self._hmac, mode="hmac"))
        if self.variant.tre.startswith("tpm part "):  # one row per part: what differs there
            cases.append(self._resident_aka_case(few))
            if self.mode != "sealed":
                cases.append(self._protected_e_k_case(many))
            return cases
        cases.append(self._real_aka_case("aka-5g", mid, five_g=True))
        cases.append(self._resident_aka_case(few))
        if self.mode != "sealed" and self.bus_protection:  # the opt-out, to show the cost
            cases.append(
                self._real_aka_case("aka-milenage (no bus protection)", mid, bus_protection=False)
            )
            cases.append(self._resident_aka_case(few, bus_protection=False))
            cases.append(self._protected_e_k_case(many))
            if self.variant.kind in ("load", "use"):  # the lean layer's rows: ESYS beside them
                cases.append(self._protected_e_k_case(many, layer="esys"))
                cases.append(self._resident_aka_case(few, layer="esys"))
                cases.append(self._real_aka_case("aka-milenage (ESYS reference)", mid,
                                                 layer="esys"))  # fmt: skip
        if self.variant.kind == "use":
            cases.append(self._fresh_session_case(few))
        if self._tuak is not None:
            cases.append(self._real_aka_case("aka-tuak", self._tuak))
        if self.variant.full:  # the ECB and physical rows
            cases.append(self._suci_case(few))
            cases.append(self._resync_case())
            cases += self._attest_cases(few)
            if self._allow_import:
                cases.append(self._import_case())
                cases.append(self._provisioning_case())
        return cases

    def close(self) -> None:
        self._stack.close()

    # -- raw -----------------------------------------------------------------------------------
    def _raw_case(self, batch: int) -> Case:
        from tpm.tss import TPM2_ALG, TPM2B_IV, TPM2B_MAX_BUFFER

        esys = self._conn.esys
        resident = _Resident(self._conn, self._milenage.record, self.mode)
        block = TPM2B_MAX_BUFFER(os.urandom(16))
        zero = TPM2B_MAX_BUFFER(bytes(16))
        empty_iv = TPM2B_IV()
        iv = TPM2B_IV(os.urandom(16))
        if self.mode == "sealed":
            operation, detail = (
                "raw: Unseal",
                (
                    "one TPM2_Unseal of the sealed K in the empty-password session (cleartext "
                    "response: the floor; the real path salts and encrypts the session)"
                ),
            )

            def body(n: int) -> None:
                key, unseal = resident.key(), esys.unseal
                try:
                    for _ in range(n):
                        unseal(key)
                except TSS2_Exception as exc:
                    raise translate(exc, "raw Unseal") from None

        elif self.variant.kind == "use":
            return self._raw_policy_case(resident, batch, block, empty_iv)
        elif self.mode == "cfb":
            operation, detail = (
                "raw: EncryptDecrypt2 (CFB)",
                (
                    "one TPM2_EncryptDecrypt2 CFB decrypt of one block (IV = X, input 0¹⁶ → "
                    "E_K(X)), K loaded, empty-password session"
                ),
            )

            def body(n: int) -> None:
                key, ed2, cfb = resident.key(), esys.encrypt_decrypt_2, TPM2_ALG.CFB
                try:
                    for _ in range(n):
                        ed2(key, True, cfb, iv, zero)
                except TSS2_Exception as exc:
                    raise translate(exc, "raw EncryptDecrypt2") from None

        else:
            operation, detail = (
                "raw: EncryptDecrypt2 (ECB)",
                ("one TPM2_EncryptDecrypt2 ECB of one block, K loaded, empty-password session"),
            )

            def body(n: int) -> None:
                key, ed2, ecb = resident.key(), esys.encrypt_decrypt_2, TPM2_ALG.ECB
                try:
                    for _ in range(n):
                        ed2(key, False, ecb, empty_iv, block)
                except TSS2_Exception as exc:
                    raise translate(exc, "raw EncryptDecrypt2") from None

        return Case(
            self.tre, operation, body, batch=batch, raw=True, detail=detail,
            setup=resident.load, teardown=resident.unload,
        )  # fmt: skip

    def _raw_policy_case(self, resident: _Resident, batch: int, block: Any, iv: Any) -> Case:
        """The bare commands of one use-gated E_K: the policy steps and EncryptDecrypt2 in a
        session started once (what :class:`tpm.policy_session.PolicyRunner` sends, minus its
        Python)."""
        from tpm.nv import resource as nv_resource
        from tpm.policy import PolicyCommandCode, PolicyNv, PolicyPcr
        from tpm.policy_session import start_session
        from tpm.tss import TPM2_ALG, TPM2B_OPERAND, TPML_PCR_SELECTION

        conn, esys = self._conn, self._conn.esys
        steps = self._milenage.record.policy.k_steps()
        pcr, nv_step, cc = steps[0], steps[1], steps[2]
        if not (
            isinstance(pcr, PolicyPcr)
            and isinstance(nv_step, PolicyNv)
            and isinstance(cc, PolicyCommandCode)
        ):
            raise LocalProtocolError(f"use-gated policy steps are {steps!r}")
        selection = TPML_PCR_SELECTION.parse(pcr.selection)
        operand = TPM2B_OPERAND(nv_step.operand)
        held: dict[str, Any] = {}

        def setup() -> None:
            resident.load()
            held["nv"] = _tss(lambda: nv_resource(conn, nv_step.index), "NV index")
            held["session"] = _tss(lambda: start_session(conn), "StartAuthSession")

        def teardown() -> None:
            if "session" in held:
                conn.flush(held.pop("session"))
            held.pop("nv", None)  # the connection's shared ESYS object: never closed here
            resident.unload()

        def one(key: Any, session: Any, nv: Any) -> None:
            esys.policy_pcr(session, pcr.digest, selection)
            esys.policy_nv(nv, nv, session, operand, nv_step.operation, nv_step.offset)
            esys.policy_command_code(session, cc.code)
            esys.encrypt_decrypt_2(key, False, TPM2_ALG.ECB, iv, block, session1=session)

        def body(n: int) -> None:
            key, session, nv = resident.key(), held["session"], held["nv"]
            try:
                for _ in range(n):
                    one(key, session, nv)
            except TSS2_Exception as exc:
                raise translate(exc, "raw policy + EncryptDecrypt2") from None

        return Case(
            self.tre, "raw: policy + EncryptDecrypt2", body, batch=batch, raw=True,
            detail="PolicyPCR + PolicyNV + PolicyCommandCode + EncryptDecrypt2 (ECB, one block) "
            "in a policy session started once: the bare commands one use-gated E_K needs "
            "(a use-gated K has no bare EncryptDecrypt2; the ECB row has that one)",
            setup=setup, teardown=teardown,
        )  # fmt: skip

    # -- AKA -----------------------------------------------------------------------------------
    def _bus_label(self, protect: bool) -> str:
        if self.mode == "sealed":
            return "bus-protected (sealed K: always)"
        if protect:
            return "bus-protected (E_K parameters encrypted, salted session)"
        return "NO bus protection (opt-out: E_K parameters in clear on the TPM bus)"

    def _real_aka_case(
        self,
        operation: str,
        mid: _BenchMid,
        *,
        bus_protection: bool | None = None,
        five_g: bool = False,
        layer: Layer = "lean",
        mode: Mode | None = None,
    ) -> Case:
        conn, registry = self._conn, self._site.registry
        mode = mode or self.variant.mode
        protect = self.bus_protection if bus_protection is None else bus_protection
        if mode == "hmac":
            protect = True  # TPM2_HMAC's buffer comes first: always protectable

        def body(n: int) -> None:
            for _ in range(n):
                vector = mid.pool.take()
                outcome = authenticate(
                    conn, registry, mid.mid, vector.rand, vector.autn, mode=mode,
                    bus_protection=protect, layer=layer,
                )  # fmt: skip
                if five_g:
                    me_5g(outcome.result, vector, operation)
                else:
                    _expect_success(outcome.result, operation)

        extra = " + the ME's RES*, K_AUSF, K_SEAF, K_AMF in software" if five_g else ""
        label = (
            "K a TPM HMAC key, five TPM2_HMAC per AKA with buffer and outHMAC encrypted in the"
            " salted session (docs/hmac-aka.md)"
            if mode == "hmac"
            else self._bus_label(protect)
        )
        return Case(
            self.tre, operation, body, batch=1, teardown=mid.pool.top_up,
            observe=lambda into: observe_tpm(conn.transport, into),
            detail=f"real path, mode {mode or self.mode}, {label}: "
            "tpm.aka.authenticate (registry lock + REG_CTR check, load parent → OPc → K, AKA, "
            f"SQN commit = fsync + one NV write, flush); {_layer_text(layer)}{extra}",
        )  # fmt: skip

    def _suci_case(self, batch: int) -> Case:
        """Profile B with the ephemeral key made and used in the TPM (TPM2_ECDH_KeyGen)."""
        keys = HomeKeys()
        agreement = TpmAgreement(self._conn)

        def body(n: int) -> None:
            for _ in range(n):
                suci_once(keys, Profile.B, agreement)

        return Case(
            self.tre, "suci", body, batch=batch,
            detail="Profile B: TPM2_LoadExternal of the home network key + TPM2_ECDH_KeyGen "
            "(ephemeral key made and used in the TPM), flush; X9.63 KDF, AES-CTR, HMAC in "
            "software. Profile A (X25519) cannot run in a TPM 2.0",
        )  # fmt: skip

    def _protected_e_k_case(self, batch: int, *, layer: Layer = "lean") -> Case:
        """One E_K of one block through the keyholder in the MID's protected session: the
        per-command price of parameter encryption (against the raw bare command)."""
        resident = _Resident(self._conn, self._milenage.record, self.mode, layer=layer)
        block = os.urandom(16)

        def body(n: int) -> None:
            holder = resident.get().holder
            for _ in range(n):
                holder.encrypt_blocks(block)

        what = (
            "policy steps + EncryptDecrypt2 in the salted policy session"
            if self.variant.kind == "use"
            else "EncryptDecrypt2 in the salted HMAC session (K's empty authValue)"
        )
        return Case(
            self.tre,
            "e_k (bus-protected)" if layer == "lean" else "e_k (bus-protected, ESYS reference)",
            body, batch=batch,
            detail=f"one E_K of one block ({self.mode}) through TpmBlockCipher: {what}, "
            "TPMA_SESSION decrypt|encrypt (inData/outData AES-128-CFB), K loaded (untimed); "
            f"{_layer_text(layer)}",
            setup=resident.load, teardown=resident.unload,
        )  # fmt: skip

    def _resident_aka_case(
        self, batch: int, *, bus_protection: bool | None = None, layer: Layer = "lean"
    ) -> Case:
        mid = self._milenage
        protect = self.bus_protection if bus_protection is None else bus_protection
        resident = _Resident(self._conn, mid.record, self.mode, bus_protection=protect,
                             layer=layer)  # fmt: skip
        operation = (
            "aka-milenage (no registry)"
            if protect == self.bus_protection
            else "aka-milenage (no registry, no bus protection)"
        )
        if layer == "esys":
            operation = operation[:-1] + ", ESYS reference)"
        state = {"sqn": SqnState()}  # starts where the MID was provisioned (SQN_MS 0)

        def body(n: int) -> None:
            loaded = resident.get()
            algorithm = loaded.algorithm
            assert algorithm is not None
            for _ in range(n):
                vector = mid.pool.take()
                with loaded.session():
                    result, state["sqn"] = usim_authenticate(
                        algorithm, state["sqn"], vector.rand, vector.autn
                    )
                _expect_success(result, operation)

        def teardown() -> None:
            resident.unload()
            mid.pool.top_up()

        what = {
            "ecb": "3 × EncryptDecrypt2 (ECB)",
            "cfb": "3 × EncryptDecrypt2 (CFB decrypt)",
            "sealed": "one Unseal per AKA in the MID's salted, response-encrypted session "
            "(started at load), AES in software",
        }[self.mode]
        if self.variant.kind == "use":
            what = "3 × (policy steps + EncryptDecrypt2) in one policy session kept for the MID"
        elif self.mode != "sealed":
            what += (
                " in one salted HMAC session kept for the MID" if protect
                else ", empty-password session"
            )  # fmt: skip
        return Case(
            self.tre, operation, body, batch=batch,
            detail=f"K loaded (untimed), SQN state in memory, nothing written, "
            f"{self._bus_label(protect)}: {what}; {_layer_text(layer)}",
            setup=resident.load, teardown=teardown,
        )  # fmt: skip

    def _fresh_session_case(self, batch: int) -> Case:
        """Use-gated, but a new policy session for every E_K (StartAuthSession + steps +
        command + FlushContext): what keeping the session saves."""
        from tpm.keyholder import TpmBlockCipher
        from tpm.policy_session import PolicyRunner

        conn, mid = self._conn, self._milenage
        resident = _Resident(conn, mid.record, self.mode, bus_protection=False)
        steps = mid.record.policy.k_steps()
        state = {"sqn": SqnState()}
        held: dict[str, AkaAlgorithm] = {}

        @contextlib.contextmanager
        def fresh() -> Any:
            with PolicyRunner(conn, steps) as runner, runner.use() as session:
                yield session

        def setup() -> None:
            resident.load()
            holder = TpmBlockCipher(conn, resident.key(), mode="ecb", authorize=fresh)
            held["algorithm"] = Milenage(holder, resident.get().secret)

        def body(n: int) -> None:
            algorithm = held["algorithm"]
            for _ in range(n):
                vector = mid.pool.take()
                result, state["sqn"] = usim_authenticate(
                    algorithm, state["sqn"], vector.rand, vector.autn
                )
                _expect_success(result, "aka-milenage (session per command)")

        def teardown() -> None:
            held.clear()
            resident.unload()
            mid.pool.top_up()

        return Case(
            self.tre, "aka-milenage (session per command)", body, batch=batch,
            detail="as (no registry, no bus protection), but StartAuthSession + policy steps + "
            "EncryptDecrypt2 + FlushContext for each of the 3 E_K (unsalted sessions, no "
            "parameter encryption: what keeping the session saves)",
            setup=setup, teardown=teardown,
        )  # fmt: skip

    def _resync_case(self) -> Case:
        conn, registry, mid, mode = self._conn, self._site.registry, self._milenage, self.mode
        replay: AuthVector = self._replay
        protect = self.bus_protection

        def body(n: int) -> None:
            for _ in range(n):
                outcome = authenticate(
                    conn, registry, mid.mid, replay.rand, replay.autn, mode=mode,
                    bus_protection=protect,
                )  # fmt: skip
                if not isinstance(outcome.result, AkaSyncFailure):
                    raise LocalProtocolError(f"replayed AUTN gave {outcome.result.result}")
                mid.hss.resynchronise(mid.imsi, replay.rand, outcome.result.auts)

        return Case(
            self.tre, "aka-resync", body,
            observe=lambda into: observe_tpm(conn.transport, into),
            detail=f"real path with a replayed AUTN, {self._bus_label(protect)}: the TPM side "
            "answers AUTS (nothing committed), the HSS checks MAC-S and recovers SQN_MS",
        )  # fmt: skip

    # -- attestation ---------------------------------------------------------------------------
    def _attest_cases(self, batch: int) -> list[Case]:
        from bench.quote_floor import BareQuote, BareSignature
        from tpm.evidence import evidence_from_files
        from tpm.marshal import tpml_from_selection
        from tpm.pcrsel import parse_selection
        from tpm.tss import TPM2B_DATA
        from tpm.verify import verify_quote

        quoter, ak = self._quoter, self._ak
        selection = parse_selection(QUOTE_PCRS)
        made: dict[str, Any] = {}

        def quote(n: int) -> None:
            for _ in range(n):
                quoter.quote(os.urandom(16), selection)

        tpml, esys = tpml_from_selection(selection), self._conn.esys

        def esys_handle() -> None:  # untimed: the lean Quoter opens its ESYS handle on first use
            quoter.handle  # noqa: B018

        def bare_quote(n: int) -> None:
            handle = quoter.handle  # looked up per sample: the provisioning case reopens it
            try:
                for _ in range(n):
                    esys.quote(handle, tpml, TPM2B_DATA(os.urandom(16)))
            except TSS2_Exception as exc:
                raise translate(exc, "bare TPM2_Quote") from None

        floor = BareQuote(self._conn.transport, ak.handle, tpml)

        def bare_quote_bytes(n: int) -> None:  # marshalled here, sent bare: no client stack
            for _ in range(n):
                floor.send()

        def fresh_quote() -> None:
            nonce = os.urandom(16)
            made["nonce"], made["files"] = nonce, quoter.quote(nonce, selection)

        def verify(n: int) -> None:
            nonce, files = made["nonce"], made["files"]
            for _ in range(n):
                verify_quote(evidence_from_files(files), nonce=nonce, expected_ak_name=ak.name)

        def fresh_signature() -> None:  # untimed: the signature of a fresh quote, as DER
            fresh_quote()
            made["signature"] = BareSignature.of(evidence_from_files(made["files"]))

        def bare_verify(n: int) -> None:
            verify = made["signature"].verify
            for _ in range(n):
                verify()

        def both(n: int) -> None:
            for _ in range(n):
                nonce = os.urandom(16)
                files = quoter.quote(nonce, selection)
                verify_quote(evidence_from_files(files), nonce=nonce, expected_ak_name=ak.name)

        where = f"ECC P-256 AK, {QUOTE_PCRS}"
        return [
            Case(self.tre, "quote (bare TPM2_Quote)", bare_quote, batch=batch, setup=esys_handle,
                 detail=f"one ESAPI quote, AK handle and selection prepared ({where}): the "
                 "bare command through ESAPI (its client-stack cost included)"),
            Case(self.tre, "quote (bare TPM2_Quote, bytes)", bare_quote_bytes, batch=batch,
                 detail=f"one TPM2_Quote marshalled here and sent on the transport, response "
                 f"code checked ({where}): no client stack, the floor; with verify (bare "
                 "signature), the reference quote+verify is held to (goal: at most 1.2× their "
                 "sum)"),
            Case(self.tre, "quote", quote, batch=batch,
                 detail=f"tpm.quote.Quoter.quote: TPM2_Quote + PCR values checked against the "
                 f"signed pcrDigest ({where})"),
            Case(self.tre, "verify", verify, batch=batch, setup=fresh_quote,
                 detail="tpm.verify.verify_quote in memory: signature, AK name, magic, type, "
                 "nonce, signed selection, pcrDigest"),
            Case(self.tre, "verify (bare signature)", bare_verify, batch=4 * batch,
                 setup=fresh_signature,
                 detail="one ECDSA P-256 / SHA-256 verification of a quote's signature with "
                 "cryptography, key and DER signature prepared: the verifier's share of the "
                 "reference for quote+verify (bare TPM2_Quote + this)"),
            Case(self.tre, "quote+verify", both, batch=batch,
                 detail=f"quote then verify, fresh nonce each ({where})"),
        ]  # fmt: skip

    # -- MID import ----------------------------------------------------------------------------
    def _import_case(self) -> Case:
        conn, registry = self._conn, self._site.registry
        imported: list[str] = []

        def body(n: int) -> None:
            for _ in range(n):
                package = wrap_for_device(
                    conn, MidSecrets(os.urandom(16), os.urandom(16)), imsi=_bench_imsi(),
                    algorithm=AlgorithmSpec(), amf=_AMF, sqn_ms=bytes(6), kind="load",
                )  # fmt: skip
                imported.append(import_package(conn, registry, package, activate=True).mid)

        def teardown() -> None:  # keep the registry the same size for every sample
            while imported:
                delete_mid(conn, registry, imported.pop())

        return Case(
            self.tre, "mid-import", body, teardown=teardown,
            detail="operator wrap (device_info reads, ECC parent, TPM2_Duplicate format) + "
            "import_package (checks, 3 × TPM2_Import + Load, MID_CTR/MID_STATE/AUDIT/REG_CTR "
            "writes), all flushed; deleted again untimed; one MID_STATE slot per sample, so "
            "this runs only on the bench TPM",
        )  # fmt: skip

    # -- full provisioning -----------------------------------------------------------------------
    def _provisioning_case(self) -> Case:
        """One full provisioning by the host agent (as ``trelab provision`` runs it, minus
        process start) against the real operator side in-process."""
        from host.provision import AgentFiles, provision
        from protocol.client import InProcessTransport

        from ..provision_bench import OperatorSide, operator_side

        conn, registry, site = self._conn, self._site.registry, self._site
        held: dict[str, OperatorSide] = {}
        made: list[str] = []

        def setup() -> None:  # untimed: operator config, keys, store in a temp dir (once)
            if "operator" not in held:
                if site.ca_bundle is None:
                    raise Unavailable("no manufacturer CA bundle for this TPM")
                scratch = Path(tempfile.mkdtemp(prefix="trelab-bench-operator-"))
                self._stack.callback(shutil.rmtree, scratch, ignore_errors=True)
                operator = operator_side(site.tcti, site.ca_bundle, scratch)
                self._stack.callback(operator.close)
                held["operator"] = operator
            # ESYS keeps one resource object per TPM handle: the agent's AK lookup closes the
            # persistent AK's, which the attestation cases' Quoter holds open. Close the
            # Quoter's for the sample and reopen it in teardown.
            self._quoter.__exit__(None, None, None)

        def body(n: int) -> None:
            operator = held["operator"]
            for _ in range(n):
                result = provision(
                    conn, registry, InProcessTransport(operator.app), operator.trust,
                    sho="sho-a", network="bench",
                )  # fmt: skip
                made.append(result.finished.mid_id)
                if result.finished.state != "ACTIVE":
                    raise LocalProtocolError(
                        f"provisioning ended in state {result.finished.state}, not ACTIVE"
                    )

        def teardown() -> None:  # untimed: the registry and agent file stay the same size
            try:
                files = AgentFiles(registry)
                while made:
                    mid = made.pop()
                    with contextlib.suppress(UnknownMid):
                        delete_mid(conn, registry, mid)
                    with files.locked():
                        state = files.read()
                        kept = {k: v for k, v in state.mids.items() if k != mid}
                        files.write(replace(state, mids=kept))
            finally:
                self._quoter.__enter__()

        return Case(
            self.tre, "provisioning", body, setup=setup, teardown=teardown,
            detail="one full provisioning into a new MID slot: host.provision.provision (ECC "
            "P-256 AK, RSA-2048 EK as transport key) against the operator side in-process "
            "(NetworkApp, SQLite store): register → credential activation → quote + PVA "
            "verdict → package → TPM import → NV_Certify receipts → activation, journal and "
            "registry writes with fsync; operator config, keys and store made once, untimed; "
            "the MID deleted and dropped from the agent file after each sample, untimed; one "
            "MID_STATE slot per sample, so bench TPM only (TPM vs our time: python -m "
            "bench.provision_bench)",
        )  # fmt: skip


# ---- factories -----------------------------------------------------------------------------


def lab_tpm_factory(name: str) -> Callable[[Any], TpmTre]:
    """The factory of one lab TPM row (``ecb``, ``cfb``, ``use``, ``sealed``)."""
    variant = VARIANTS[name]

    def factory(ctx: Any) -> TpmTre:
        if ctx.lab is None:
            raise Unavailable(
                "no lab in this run", fix="run without --no-lab (or `trelab lab up` first)"
            )
        site = _BenchTpm.acquire()
        try:
            return TpmTre(variant, site, quick=ctx.quick, allow_import=True)
        except BaseException:
            site.release()
            raise

    return factory


def physical_tpm_factory(ctx: Any) -> TpmTre:
    """``tpm (physical)``: the first TPM device ``lab.detect`` finds, if NV writes are allowed.

    Raises:
        Unavailable: no device, it does not answer, or ``TRELAB_HARDWARE_TPM`` is not 1.
    """
    from lab.detect import detect_tpms

    devices = detect_tpms()
    usable = [d for d in devices if d.error is None]
    if not usable:
        if devices:
            raise Unavailable(f"TPM device {devices[0].path} does not answer: {devices[0].error}")
        raise Unavailable("no physical TPM found (/dev/tpmrm0, /dev/tpm0)")
    device = usable[0]
    if os.environ.get(HARDWARE_ENV) != "1":
        raise Unavailable(
            f"physical TPM {device.path} ({device.manufacturer} {device.firmware}) found, but "
            "the bench provisions MIDs on it (NV writes wear the chip and use MID slots)",
            fix=f"set {HARDWARE_ENV}=1 to allow it",
        )
    if ctx.mid_registry is None:
        raise Unavailable(f"physical TPM {device.path} found, but no MID registry was given")
    site = TpmSite(
        tcti=device.tcti,
        registry=Registry(ctx.mid_registry),
        scratch=False,
        where=f"physical TPM {device.path}; bench MIDs go into the TPM's registry and are "
        "deleted again",
        release=lambda: None,
    )
    return TpmTre(PHYSICAL, site, quick=ctx.quick, allow_import=False)


def part_tpm_factory(name: str) -> Callable[[Any], TpmTre]:
    """The factory of the row for the real-part profile ``name``: a TPM proxy presenting that
    part in front of the shared bench swtpm (same registry: REG_CTR is that TPM's)."""

    def factory(ctx: Any) -> TpmTre:
        from firmware_stubs.tpm_proxy import profiles
        from lab.front import start_proxy, stop_proxy

        if ctx.lab is None:
            raise Unavailable(
                "no lab in this run", fix="run without --no-lab (or `trelab lab up` first)"
            )
        part = profiles.load(name)
        site = _BenchTpm.acquire()
        bench = _BenchTpm._current
        assert bench is not None and site.path is not None
        proxy = start_proxy(site.path / f"proxy-{name}", name, bench.process.port)

        def release() -> None:
            stop_proxy(proxy)
            site.release()

        fronted = dataclasses.replace(
            site, tcti=proxy.tcti, release=release,
            where=f"the bench swtpm behind the TPM proxy as {part.part} (times are swtpm's)",
        )  # fmt: skip
        try:
            return TpmTre(part_variant(name, part.part), fronted, quick=ctx.quick,
                          allow_import=False)  # fmt: skip
        except BaseException:
            release()
            raise

    return factory
