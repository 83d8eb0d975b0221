"""The MID store in the TPM and AKA with K inside it, against the lab's swtpm (issue 3 items 4–5).

Shared lab (``lab``): 3GPP Milenage/TUAK sets through the TPM keyholders (ECB, CFB, sealed), K
never in clear on the device side, tampered/replayed packages, lifecycle state, SQN replay and
persistence, registry rollback, the PolicyAuthorize Duplicate trap, policy digests vs trial
sessions. A second lab (``lab_factory``) takes the destructive tests: PCR extension and
re-authorisation, PIN lockout, TPM2_Clear. One registry per TPM (REG_CTR and AUDIT are
TPM-wide), so every test on a lab goes through that lab's registry.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aka.autn import build_autn, recover_sqn_ms
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import join_sqn, split_sqn
from aka.tuak import Tuak
from aka.usim import AkaSuccess, AkaSyncFailure
from host.cli import main as cli_main
from lab.lab import LabStatus
from threats.tpm_tools import (
    duplicate_with_signed_policy,
    extend_pcr,
    fresh_autn,
    reset_pcr,
    unlocked_k,
)
from tpm import nv
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.keyholder import TpmBlockCipher, probe_symmetric
from tpm.mid import (
    LoadedMid,
    delete_mid,
    ensure_srk,
    factory_reset,
    import_package,
    object_name,
    reauthorize,
    set_state,
    verify_audit,
    wrap_for_device,
)
from tpm.mid_errors import (
    MidRefused,
    PackageRejected,
    PinRejected,
    RegistryRollback,
    TpmLockedOut,
    UnknownMid,
)
from tpm.package import AlgorithmSpec, MidSecrets, Package, WrappedObject
from tpm.policy import (
    CC_ENCRYPT_DECRYPT2,
    CC_UNSEAL,
    PolicyAuthorize,
    PolicyAuthValue,
    PolicyCommandCode,
    PolicyNv,
    PolicyPcr,
    PolicySecret,
    pcr_digest,
    policy_digest,
)
from tpm.policy_session import trial_digest
from tpm.registry import Registry
from trelab.errors import BadInput

pytestmark = pytest.mark.lab
os.environ.setdefault("TSS2_LOG", "all+none")  # the errors we assert on carry the TPM codes

DATA = Path(__file__).resolve().parents[2] / "aka" / "data"
MILENAGE = json.loads((DATA / "milenage_35208.json").read_text())["milenage"]
TUAK = json.loads((DATA / "tuak_35233.json").read_text())["tuak"]
PCRS = "sha256:0,1,2,3,4,5,6,7"
IMSI = "001010123456789"


def h(text: str) -> bytes:
    return bytes.fromhex(text)


# ---- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conn(lab_tcti: str) -> Iterator[TpmConnection]:
    with TpmConnection(lab_tcti) as c:
        yield c


@pytest.fixture(scope="module")
def registry(lab: LabStatus) -> Registry:
    return Registry(lab.lab_dir / "mids.json")


@pytest.fixture(scope="module")
def operator_key() -> Any:
    return ec.generate_private_key(ec.SECP256R1())


def live_handles(tcti: str) -> list[str]:
    from tpm2_pytss.constants import TPM2_CAP

    found = []
    with TpmConnection(tcti) as c:
        for first in (0x80000000, 0x02000000, 0x03000000):
            _, caps = c.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
            found += [f"0x{int(x):08x}" for x in caps.data.handles if int(x) >> 24 == first >> 24]
    return found


@pytest.fixture(autouse=True)
def nothing_left_loaded(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every transient object and session this code creates is flushed (swtpm has no RM)."""
    if request.node.get_closest_marker("hardware"):
        yield  # the hardware test must not need the lab
        return
    lab_tcti = request.getfixturevalue("lab_tcti")
    assert live_handles(lab_tcti) == []
    yield
    assert live_handles(lab_tcti) == []


def provision(
    c: TpmConnection,
    reg: Registry,
    *,
    k: bytes,
    secret: bytes,
    kind: str = "load",
    algorithm: AlgorithmSpec | None = None,
    sqn_ms: bytes = bytes(6),
    amf: bytes = b"\x80\x00",
    pcrs: str = PCRS,
    pin: bytes | None = None,
    form: str | None = None,
    operator_key: Any = None,
    state: str = "active",
) -> tuple[Package, Any]:
    package = wrap_for_device(
        c,
        MidSecrets(k, secret, pin),
        imsi=IMSI,
        algorithm=algorithm or AlgorithmSpec(),
        amf=amf,
        sqn_ms=sqn_ms,
        kind=kind,
        selection=pcrs,
        form=form,
        operator_key=operator_key,
    )
    record = import_package(c, reg, package, activate=state == "active")
    return package, record


def just_below(sqn: bytes) -> bytes:
    seq, _ = split_sqn(sqn)
    return join_sqn(seq - 1, 0)


# ---- policy digests against the TPM ----------------------------------------------------------


def test_policy_digests_match_trial_sessions(conn: TpmConnection, operator_key: Any) -> None:
    from tpm.mid import pcr_values
    from tpm.package import operator_public, sign_approval

    nv.ensure_indices(conn)
    srk, srk_public = ensure_srk(conn)
    srk_name = object_name(srk_public)
    digest = pcr_digest(pcr_values(conn, "sha256:0,7,16"))
    approval = sign_approval(operator_key, "sha256:0,7,16", digest, 5)
    op_public = operator_public(operator_key)
    from tpm2_pytss import TPM2B_PUBLIC

    op_name = object_name(TPM2B_PUBLIC.unmarshal(op_public)[0])
    active = PolicyNv(nv.MID_STATE, nv.state_index_name(), b"\x02", 5)
    cases = [
        [PolicyPcr("sha256:0,7,16", digest)],
        [active],
        [PolicyAuthValue()],
        [PolicyCommandCode(CC_ENCRYPT_DECRYPT2)],
        [PolicySecret(srk_name)],
        [PolicySecret(srk_name), PolicyPcr("sha256:0,7,16", digest)],
        [
            PolicyPcr("sha256:0,7,16", digest),
            active,
            PolicyAuthValue(),
            PolicyCommandCode(CC_ENCRYPT_DECRYPT2),
        ],
        [PolicyAuthorize(op_name), PolicyCommandCode(CC_UNSEAL)],
    ]
    for steps in cases:
        on_tpm = trial_digest(
            conn, steps, handles={srk_name: srk}, approval=approval, operator_public=op_public
        )
        assert on_tpm == policy_digest(steps), steps


@pytest.mark.symmetric_k
def test_probe_agrees_with_tpm_info(conn: TpmConnection) -> None:
    from tpm.info import choose_aka_mode, probe

    support = probe_symmetric(conn)
    assert support.default_mode == choose_aka_mode(probe(conn))
    assert support.encrypt_decrypt2 and support.ecb and support.cfb  # swtpm 0.7.1 has them all


# ---- 3GPP sets through the TPM -----------------------------------------------------------------


@pytest.mark.symmetric_k
@pytest.mark.parametrize("vector", MILENAGE, ids=lambda v: v["name"].split()[-1])
def test_milenage_sets_ecb_and_cfb(
    conn: TpmConnection, registry: Registry, vector: dict[str, Any]
) -> None:
    k, opc, rand, sqn, amf = (h(vector[x]) for x in ("K", "OPc", "RAND", "SQN", "AMF"))
    _, record = provision(conn, registry, k=k, secret=opc, amf=amf, sqn_ms=just_below(sqn))

    outcome = authenticate(conn, registry, record.mid, rand, h(vector["derived"]["AUTN"]))
    assert outcome.mode == "ecb" and outcome.tpm_calls == 3  # TEMP, OUT2…5 (AK), OUT1
    assert isinstance(outcome.result, AkaSuccess)
    assert (outcome.result.res.hex(), outcome.result.ck.hex(), outcome.result.ik.hex()) == (
        vector["f2_res"],
        vector["f3_ck"],
        vector["f4_ik"],
    )
    # CFB fallback, next SQN: RES/CK/IK depend on RAND only, so they are the set's values again
    seq, _ = split_sqn(sqn)
    cfb = authenticate(
        conn, registry, record.mid, rand, fresh_autn(k, opc, rand, seq + 1, amf), mode="cfb"
    )
    assert cfb.mode == "cfb" and isinstance(cfb.result, AkaSuccess)
    assert cfb.result.res.hex() == vector["f2_res"] and cfb.result.ck.hex() == vector["f3_ck"]

    for mode in ("ecb", "cfb"):  # every f1…f5* through the keyholder
        with LoadedMid(conn, registry.read().get(record.mid), mode=mode) as loaded:  # type: ignore[arg-type]
            assert isinstance(loaded.holder, TpmBlockCipher)
            assert isinstance(loaded.algorithm, Milenage)
            out = loaded.algorithm.all_outputs(rand, sqn, amf)
        assert {name: value.hex() for name, value in out.items()} == {
            "f1": vector["f1"],
            "f1star": vector["f1_star"],
            "f2": vector["f2_res"],
            "f3": vector["f3_ck"],
            "f4": vector["f4_ik"],
            "f5": vector["f5_ak"],
            "f5star": vector["f5_star_ak"],
        }


@pytest.mark.parametrize("vector", MILENAGE[:3], ids=lambda v: v["name"].split()[-1])
def test_milenage_sealed_mode(
    conn: TpmConnection, registry: Registry, vector: dict[str, Any]
) -> None:
    k, opc, rand, sqn, amf = (h(vector[x]) for x in ("K", "OPc", "RAND", "SQN", "AMF"))
    _, record = provision(
        conn, registry, k=k, secret=opc, amf=amf, sqn_ms=just_below(sqn), form="sealed"
    )
    with pytest.raises(BadInput, match="sealed"):
        authenticate(conn, registry, record.mid, rand, h(vector["derived"]["AUTN"]), mode="ecb")
    outcome = authenticate(conn, registry, record.mid, rand, h(vector["derived"]["AUTN"]))
    assert outcome.mode == "sealed" and outcome.tpm_calls == 1  # one unseal for the AKA
    assert "weaker" in outcome.to_json()["note"]
    assert isinstance(outcome.result, AkaSuccess) and outcome.result.res.hex() == vector["f2_res"]


@pytest.mark.parametrize("vector", TUAK, ids=lambda v: v["name"].split()[-1])
def test_tuak_sets_sealed(conn: TpmConnection, registry: Registry, vector: dict[str, Any]) -> None:
    lengths = vector["lengths_bits"]
    k, topc, rand, sqn, amf = (h(vector[x]) for x in ("K", "TOPc", "RAND", "SQN", "AMF"))
    spec = AlgorithmSpec(
        name="tuak",
        key_bits=lengths["K"],
        mac_bits=lengths["MAC"],
        res_bits=lengths["RES"],
        ck_bits=lengths["CK"],
        ik_bits=lengths["IK"],
        iterations=vector["keccak_iterations"],
    )
    _, record = provision(
        conn, registry, k=k, secret=topc, algorithm=spec, amf=amf, sqn_ms=just_below(sqn)
    )
    assert record.policy.k_form == "sealed"  # no TPM has Keccak
    autn = build_autn(sqn, h(vector["f5_ak"]), amf, h(vector["f1"])[:8])
    if lengths["MAC"] == 64:
        outcome = authenticate(conn, registry, record.mid, rand, autn)
        assert outcome.mode == "sealed" and isinstance(outcome.result, AkaSuccess)
        assert outcome.result.res.hex() == vector["f2_res"]
        assert outcome.result.ck.hex() == vector["f3_ck"]
        assert outcome.result.ik.hex() == vector["f4_ik"]
    with LoadedMid(conn, registry.read().get(record.mid)) as loaded:
        tuak = loaded.algorithm
        assert isinstance(tuak, Tuak)
        with loaded.session():
            f = tuak.f2345(rand)
            got = {
                "f1": tuak.f1(rand, sqn, amf).hex(),
                "f1_star": tuak.f1star(rand, sqn, amf).hex(),
                "f2_res": f.res.hex(),
                "f3_ck": f.ck.hex(),
                "f4_ik": f.ik.hex(),
                "f5_ak": f.ak.hex(),
                "f5_star_ak": tuak.f5star(rand).hex(),
            }
    assert got == {name: vector[name] for name in got}


# ---- K never in clear on the device side ------------------------------------------------------


@pytest.mark.symmetric_k
def test_k_never_in_clear_on_the_device(
    conn: TpmConnection, registry: Registry, tmp_path: Path
) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    package, record = provision(conn, registry, k=k, secret=opc, kind="use")
    for text in (package.dumps(), registry.path.read_text()):
        assert k.hex() not in text and opc.hex() not in text
    # spy on TPM2_Unseal during an ECB AKA: only the OPc object is ever unsealed. The AKA's
    # commands go through the lean layer: its Unseal names the object, and the transport
    # sees every TPM2_Unseal whoever sends it (ESYS included)
    from tpm import lean_commands
    from tpm.tss import CommandEvent

    esys = conn.esys
    real_unseal = lean_commands.unseal
    unsealed: list[bytes] = []
    sent: list[CommandEvent] = []

    def spy(c: Any, item: Any, **kw: Any) -> Any:
        unsealed.append(item.name)
        return real_unseal(c, item, **kw)

    lean_commands.unseal = spy  # type: ignore[assignment]
    try:
        rand = os.urandom(16)
        with conn.transport.observe(sent.append):
            outcome = authenticate(conn, registry, record.mid, rand, fresh_autn(k, opc, rand, 1))
    finally:
        lean_commands.unseal = real_unseal  # type: ignore[assignment]
    assert isinstance(outcome.result, AkaSuccess) and outcome.mode == "ecb"
    assert outcome.layer == "lean"
    assert unsealed == [package.secret.name]
    assert package.k.name not in unsealed
    assert [e.name for e in sent].count("unseal") == 1
    # and the TPM itself will not unseal a SYMCIPHER K, whatever the session
    from tpm2_pytss import TSS2_Exception

    with LoadedMid(conn, registry.read().get(record.mid)) as loaded:
        with pytest.raises(TSS2_Exception):
            esys.unseal(loaded._key)
        # the keyholder's repr names no key material
        assert k.hex() not in repr(loaded.holder) and "in TPM" in repr(loaded.holder)


# ---- packages: tampering, replay, target ----------------------------------------------------


def flip(blob: bytes, at: int) -> bytes:
    data = bytearray(blob)
    data[at] ^= 0x01
    return bytes(data)


def tampered(package: Package) -> list[tuple[str, Package]]:
    def obj(o: WrappedObject, **kw: bytes) -> WrappedObject:
        return replace(o, **kw)

    k_public = flip(package.k.public, len(package.k.public) - 3)
    from tpm2_pytss import TPM2B_PUBLIC

    k_public_renamed = object_name(TPM2B_PUBLIC.unmarshal(k_public)[0])
    return [
        (
            "parent duplicate",
            replace(
                package, parent=obj(package.parent, duplicate=flip(package.parent.duplicate, 40))
            ),
        ),
        (
            "parent seed",
            replace(package, parent=obj(package.parent, seed=flip(package.parent.seed, 100))),
        ),
        (
            "k duplicate",
            replace(package, k=obj(package.k, duplicate=flip(package.k.duplicate, 50))),
        ),
        (
            "opc duplicate",
            replace(
                package, secret=obj(package.secret, duplicate=flip(package.secret.duplicate, 10))
            ),
        ),
        ("k seed", replace(package, k=obj(package.k, seed=flip(package.k.seed, 20)))),
        ("k public", replace(package, k=obj(package.k, public=k_public))),
        # name recomputed too: only the TPM's integrity check (HMAC over the name) can catch it
        (
            "k public + name",
            replace(package, k=obj(package.k, public=k_public, name=k_public_renamed)),
        ),
    ]


def test_tampered_package_is_refused_and_changes_nothing(
    conn: TpmConnection, registry: Registry
) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    package = wrap_for_device(
        conn,
        MidSecrets(k, opc),
        imsi=IMSI,
        algorithm=AlgorithmSpec(),
        amf=b"\x80\x00",
        sqn_ms=bytes(6),
    )
    before = registry.path.read_bytes()
    counter = nv.read_counter(conn, nv.MID_CTR)
    for label, bad in tampered(package):
        with pytest.raises(PackageRejected) as info:
            import_package(conn, registry, bad)
        assert "package" in str(info.value) or "refused" in str(info.value), label
        assert k.hex() not in str(info.value)
        assert registry.path.read_bytes() == before, label
        assert nv.read_counter(conn, nv.MID_CTR) == counter, label
        assert nv.read_state(conn, package.policy.slot) == nv.MidState.EMPTY, label
    import_package(conn, registry, package)  # the untouched package still imports


def test_replayed_and_out_of_order_packages_are_refused(
    conn: TpmConnection, registry: Registry
) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    args = {"imsi": IMSI, "algorithm": AlgorithmSpec(), "amf": b"\x80\x00", "sqn_ms": bytes(6)}
    package = wrap_for_device(conn, MidSecrets(k, opc), **args)
    import_package(conn, registry, package)
    with pytest.raises(PackageRejected, match="replayed"):
        import_package(conn, registry, package)
    counter = nv.read_counter(conn, nv.MID_CTR)
    old_seq = wrap_for_device(conn, MidSecrets(k, opc), seq=counter, **args)
    with pytest.raises(PackageRejected, match="replayed"):
        import_package(conn, registry, old_seq)
    ahead = wrap_for_device(conn, MidSecrets(k, opc), seq=counter + 2, **args)
    with pytest.raises(PackageRejected, match="out of order"):
        import_package(conn, registry, ahead)
    assert nv.read_counter(conn, nv.MID_CTR) == counter


# ---- lifecycle -------------------------------------------------------------------------------


def test_use_gated_mid_not_active_is_refused_by_host_and_tpm(
    conn: TpmConnection, registry: Registry
) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(conn, registry, k=k, secret=opc, kind="use", state="installed")
    rand = os.urandom(16)
    autn = fresh_autn(k, opc, rand, 1)
    with pytest.raises(MidRefused, match="installed"):
        authenticate(conn, registry, record.mid, rand, autn)
    with pytest.raises(MidRefused, match="MID_STATE"):  # the TPM's PolicyNV, host check skipped
        authenticate(conn, registry, record.mid, rand, autn, check_state=False)
    set_state(conn, registry, record.mid, nv.MidState.ACTIVE)
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn).result, AkaSuccess)
    # K loaded while ACTIVE, then suspended: K's own policy refuses the next E_K
    with LoadedMid(conn, registry.read().get(record.mid)) as loaded:
        loaded.holder.encrypt_blocks(bytes(16))
        set_state(conn, registry, record.mid, nv.MidState.SUSPENDED)
        with pytest.raises(MidRefused, match="MID_STATE"):
            loaded.holder.encrypt_blocks(bytes(16))
    # deleted: gone from the registry, and a surviving copy of the blobs is dead in the TPM
    set_state(conn, registry, record.mid, nv.MidState.ACTIVE)
    survivor = registry.read().get(record.mid)
    delete_mid(conn, registry, record.mid)
    assert nv.read_state(conn, record.slot) == nv.MidState.DELETED
    with pytest.raises(UnknownMid):
        authenticate(conn, registry, record.mid, rand, autn)
    with pytest.raises(MidRefused), LoadedMid(conn, survivor):
        pass


# ---- SQN: replay, persistence, rollback ---------------------------------------------------


def test_replayed_autn_gives_auts_the_network_verifies(
    conn: TpmConnection, registry: Registry
) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(conn, registry, k=k, secret=opc, sqn_ms=join_sqn(41, 0))
    rand = os.urandom(16)
    autn = fresh_autn(k, opc, rand, 42)
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn).result, AkaSuccess)
    again = authenticate(conn, registry, record.mid, rand, autn)
    assert isinstance(again.result, AkaSyncFailure) and again.result.reason == "replayed"
    sqn_ms = recover_sqn_ms(Milenage(SoftwareAes(k), opc), rand, again.result.auts)
    assert split_sqn(sqn_ms)[0] == 42
    # a forged AUTN (MAC flipped) is a MAC failure and moves nothing
    before = registry.read().get(record.mid).sqn
    forged = autn[:-1] + bytes([autn[-1] ^ 1])
    assert authenticate(conn, registry, record.mid, rand, forged).result.result == "mac_failure"
    assert registry.read().get(record.mid).sqn == before


@pytest.mark.symmetric_k
def test_sqn_state_survives_a_process_restart(
    conn: TpmConnection, registry: Registry, lab_tcti: str
) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(conn, registry, k=k, secret=opc)
    rand = os.urandom(16)
    autn = fresh_autn(k, opc, rand, 7)
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn).result, AkaSuccess)
    env = {**os.environ, "TSS2_LOG": "all+none"}
    argv = [sys.executable, "-m", "host.cli", "tpm", "aka", "--tpm", lab_tcti]
    argv += ["--registry", str(registry.path), "--mid", record.mid, "--json"]
    argv += ["--rand", rand.hex(), "--autn", autn.hex()]
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["result"] == "sync_failure" and answer["mode"] == "ecb"
    # and the other way: a new process accepts the next SQN, this one then sees it as used
    autn8 = fresh_autn(k, opc, rand, 8)
    argv[argv.index(autn.hex())] = autn8.hex()
    run = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert json.loads(run.stdout)["result"] == "success"
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn8).result, AkaSyncFailure)


def test_registry_rollback_is_detected(conn: TpmConnection, registry: Registry) -> None:
    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(conn, registry, k=k, secret=opc)
    rand = os.urandom(16)
    autn = fresh_autn(k, opc, rand, 1)
    backup = registry.path.read_bytes()
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn).result, AkaSuccess)
    latest = registry.path.read_bytes()
    registry.path.write_bytes(backup)  # an attacker restores the copy from before the AKA
    try:
        with pytest.raises(RegistryRollback, match="older"):
            authenticate(conn, registry, record.mid, rand, autn)  # would have been a replay
        code = cli_main(
            ["tpm", "mid", "list", "--tpm", conn.tcti, "--registry", str(registry.path)]
        )
        assert code == 0  # list still shows what is there, with the verdict
    finally:
        registry.path.write_bytes(latest)
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn).result, AkaSyncFailure)
    # crash between writing the file and NV_Increment: one ahead, repaired on the next read
    with registry.locked():
        data = registry.read()
        registry.write_unchecked(replace(data, version=data.version + 1))
    assert registry.read_checked(conn, data.ek_name).version == data.version + 1
    assert nv.read_counter(conn, nv.REG_CTR) == data.version + 1


def test_sqn_state_is_written_before_res(
    conn: TpmConnection, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trelab.errors import Unavailable

    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(conn, registry, k=k, secret=opc)
    rand = os.urandom(16)
    autn = fresh_autn(k, opc, rand, 3)
    counter = nv.read_counter(conn, nv.REG_CTR)

    def disk_full(*_a: Any, **_k: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tpm.registry.atomic_write_bytes", disk_full)
    with pytest.raises(Unavailable, match="registry"):
        authenticate(conn, registry, record.mid, rand, autn)  # no RES without the new SQN
    monkeypatch.undo()
    assert nv.read_counter(conn, nv.REG_CTR) == counter
    assert isinstance(authenticate(conn, registry, record.mid, rand, autn).result, AkaSuccess)


# ---- the PolicyAuthorize trap -------------------------------------------------------------


def test_operator_signed_duplicate_policy_cannot_export_k(
    conn: TpmConnection, registry: Registry, operator_key: Any
) -> None:
    from tpm2_pytss import TSS2_Exception
    from tpm2_pytss.constants import TPM2_RC

    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(
        conn, registry, k=k, secret=opc, kind="authorize", operator_key=operator_key
    )
    with LoadedMid(conn, record) as loaded:
        with pytest.raises(TSS2_Exception) as plain:
            duplicate_with_signed_policy(conn, loaded._key, operator_key, lock=False)
        assert int(plain.value.error) == int(TPM2_RC.POLICY_FAIL)
        # appending the lock cannot even be tried: the session is already bound to Duplicate
        # (Part 3 §23.11: another command code → TPM_RC_VALUE)
        with pytest.raises(TSS2_Exception) as locked:
            duplicate_with_signed_policy(conn, loaded._key, operator_key, lock=True)
        assert int(locked.value.error) == int(TPM2_RC.VALUE)

    # Control: the same signed policy DOES export a K whose policy lacks the trailing
    # PolicyCommandCode(EncryptDecrypt2) — so the refusals above are the lock's doing.
    k_ctrl = os.urandom(16)
    with unlocked_k(conn, operator_key, k_ctrl) as ctrl:
        _, exported, _ = duplicate_with_signed_policy(conn, ctrl, operator_key, lock=False)
    assert k_ctrl in bytes(exported.marshal())  # K in clear: the trap is real


# ---- CLI ----------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = cli_main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip().startswith("{") else out


@pytest.mark.symmetric_k
def test_cli_wrap_import_list_aka_delete(
    conn: TpmConnection, registry: Registry, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    vector = MILENAGE[0]
    common = ["--tpm", conn.tcti, "--registry", str(registry.path), "--json"]
    out_file = tmp_path / "mid.json"
    code, wrapped = run_cli(
        capsys, "tpm", "mid", "wrap", "--k", vector["K"], "--op", vector["OP"], "--imsi", IMSI,
        "--amf", vector["AMF"], "--sqn-ms", just_below(h(vector["SQN"])).hex(), "--policy", "use",
        "--out", str(out_file), *common,
    )  # fmt: skip
    assert code == 0 and wrapped["policy"] == "use" and wrapped["k_form"] == "symcipher"
    assert vector["K"] not in out_file.read_text()
    code, imported = run_cli(capsys, "tpm", "mid", "import", str(out_file), *common)
    assert code == 0 and imported["mid"] == wrapped["mid"] and imported["state"] == "active"
    mid = imported["mid"]
    code, listed = run_cli(capsys, "tpm", "mid", "list", *common)
    assert code == 0 and listed["freshness"] == "fresh"
    assert mid in [m["mid"] for m in listed["mids"]]
    aka = [
        "tpm",
        "aka",
        "--mid",
        mid,
        "--rand",
        vector["RAND"],
        "--autn",
        vector["derived"]["AUTN"],
    ]
    code, result = run_cli(capsys, *aka, *common)
    assert code == 0 and result["result"] == "success" and result["mode"] == "ecb"
    assert (result["res"], result["ck"], result["ik"], result["kc"]) == (
        vector["f2_res"],
        vector["f3_ck"],
        vector["f4_ik"],
        vector["derived"]["kc_c3"],
    )
    assert result["bus_protection"] is True  # the default: E_K parameters encrypted
    code, again = run_cli(capsys, *aka, "--mode", "cfb", *common)
    assert code == 0 and again["result"] == "sync_failure" and len(again["auts"]) == 28
    code, opted = run_cli(capsys, *aka, "--no-bus-protection", *common)  # the benchmark opt-out
    assert code == 0 and opted["result"] == "sync_failure" and opted["bus_protection"] is False
    assert "opt-out" in opted["note"]
    code, forged = run_cli(
        capsys, "tpm", "aka", "--mid", mid, "--rand", vector["RAND"], "--autn", "00" * 16, *common
    )
    assert code == 1 and forged["result"] == "mac_failure"
    code, suspended = run_cli(capsys, "mid", "suspend", "--local", "--mid", mid, *common)
    assert code == 0 and suspended["state"] == "suspended"
    code, refused = run_cli(capsys, *aka, *common)
    assert code == 1 and refused["error"]["type"] == "MidRefused"
    # the earlier spelling of `mid delete --local` still works
    code, deleted = run_cli(capsys, "tpm", "mid", "delete", "--mid", mid, *common)
    assert code == 0 and deleted["state"] == "deleted"
    code, gone = run_cli(capsys, *aka, *common)
    assert code == 2 and gone["error"]["type"] == "UnknownMid"
    code, listed = run_cli(capsys, "tpm", "mid", "list", *common)
    assert mid not in [m["mid"] for m in listed["mids"]]
    # the shared lab's TPM may carry other test modules' registries and AUDIT events, so the
    # audit replay is checked on the lab of our own (test_factory_reset…), not here
    assert isinstance(listed["audit_matches_tpm"], bool) and listed["audit_events"] > 0


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["tpm", "aka", "--mid", "x", "--rand", "zz", "--autn", "00" * 16], "--rand"),
        (["tpm", "aka", "--mid", "nope", "--rand", "00" * 16, "--autn", "00" * 16], "no MID"),
        (["tpm", "mid", "reset"], "--yes"),
        (["tpm", "mid", "import", "/nonexistent/p.json"], "package"),
        (
            [
                "tpm",
                "mid",
                "wrap",
                "--k",
                "00",
                "--opc",
                "00" * 16,
                "--imsi",
                IMSI,
                "--amf",
                "0000",
                "--out",
                "/tmp/x",
            ],
            "--k",
        ),
        (
            [
                "tpm",
                "mid",
                "wrap",
                "--k",
                "00" * 16,
                "--opc",
                "00" * 16,
                "--top",
                "00" * 32,
                "--imsi",
                IMSI,
                "--amf",
                "0000",
                "--out",
                "/tmp/x",
            ],
            "TUAK",
        ),
        (
            [
                "tpm",
                "mid",
                "wrap",
                "--k",
                "00" * 16,
                "--opc",
                "00" * 16,
                "--imsi",
                IMSI,
                "--amf",
                "0000",
                "--pin",
                "1",
                "--out",
                "/tmp/x",
            ],
            "pin",
        ),
    ],
)
def test_cli_bad_input_exits_2(
    conn: TpmConnection,
    registry: Registry,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    needle: str,
) -> None:
    code = cli_main([*argv, "--tpm", conn.tcti, "--registry", str(registry.path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("trelab: error:") and needle.lower() in err.lower()
    assert "Traceback" not in err


# ---- destructive: a lab of their own ------------------------------------------------------


@pytest.fixture(scope="module")
def own_lab(lab_factory: Callable[..., Any]) -> LabStatus:
    status: LabStatus = lab_factory("tpm-mid-destructive").up()
    return status


@pytest.fixture()
def own(own_lab: LabStatus) -> Iterator[tuple[TpmConnection, Registry]]:
    with TpmConnection(own_lab.tcti) as c:
        yield c, Registry(own_lab.lab_dir / "mids.json")
    assert live_handles(own_lab.tcti) == []


def test_package_for_another_tpm_is_refused(
    own: tuple[TpmConnection, Registry], conn: TpmConnection
) -> None:
    c, reg = own
    package = wrap_for_device(
        conn, MidSecrets(os.urandom(16), os.urandom(16)), imsi=IMSI,
        algorithm=AlgorithmSpec(), amf=b"\x80\x00", sqn_ms=bytes(6),
    )  # fmt: skip
    with pytest.raises(PackageRejected, match="another TPM"):
        import_package(c, reg, package)


def test_pcr_change_blocks_k_until_reauthorised(
    own: tuple[TpmConnection, Registry], operator_key: Any
) -> None:
    c, reg = own
    mids = {}
    keys = {}
    for kind in ("authorize", "load", "use"):
        k, opc = os.urandom(16), os.urandom(16)
        _, record = provision(
            c, reg, k=k, secret=opc, kind=kind, pcrs="sha256:0,16", operator_key=operator_key
        )
        mids[kind], keys[kind] = record.mid, (k, opc)
    rand = os.urandom(16)

    def aka(kind: str, seq: int) -> Any:
        k, opc = keys[kind]
        return authenticate(c, reg, mids[kind], rand, fresh_autn(k, opc, rand, seq)).result

    for kind in mids:
        assert isinstance(aka(kind, 1), AkaSuccess)
    extend_pcr(c, 16, os.urandom(32))  # e.g. the MID manager's measurement changed
    try:
        for kind in mids:
            with pytest.raises(MidRefused, match=r"PCR|policy"):
                aka(kind, 2)
        reauthorize(c, reg, mids["authorize"], operator_key)  # operator approves the new state
        assert isinstance(aka("authorize", 2), AkaSuccess)
        for kind in ("load", "use"):  # these need a new package: PCRs are in their policy
            with pytest.raises(MidRefused):
                aka(kind, 2)
        with pytest.raises(BadInput, match="operator key"):
            reauthorize(c, reg, mids["authorize"], ec.generate_private_key(ec.SECP256R1()))
    finally:
        reset_pcr(c, 16)


def test_wrong_pin_locks_the_tpm_out(own: tuple[TpmConnection, Registry]) -> None:
    c, reg = own
    esys = c.esys
    esys.dictionary_attack_parameters(3, 1000, 1000)  # lockout auth is empty in the lab
    esys.dictionary_attack_lock_reset()
    k, opc = os.urandom(16), os.urandom(16)
    _, record = provision(c, reg, k=k, secret=opc, kind="use", pin=b"2468")
    rand = os.urandom(16)
    try:
        with pytest.raises(BadInput, match="PIN"):
            authenticate(c, reg, record.mid, rand, fresh_autn(k, opc, rand, 1))
        for _ in range(3):
            with pytest.raises(PinRejected):
                authenticate(c, reg, record.mid, rand, fresh_autn(k, opc, rand, 1), pin=b"0000")
        with pytest.raises(TpmLockedOut):
            authenticate(c, reg, record.mid, rand, fresh_autn(k, opc, rand, 1), pin=b"2468")
    finally:
        esys.dictionary_attack_lock_reset()
    result = authenticate(c, reg, record.mid, rand, fresh_autn(k, opc, rand, 1), pin=b"2468")
    assert isinstance(result.result, AkaSuccess)


def test_factory_reset_kills_every_mid_and_keeps_the_ek(
    own: tuple[TpmConnection, Registry], capsys: pytest.CaptureFixture[str]
) -> None:
    from tpm.ek import read_ek_certificates

    c, reg = own
    for kind in ("load", "use"):
        provision(c, reg, k=os.urandom(16), secret=os.urandom(16), kind=kind)
    _, doomed = provision(c, reg, k=os.urandom(16), secret=os.urandom(16))
    set_state(c, reg, doomed.mid, nv.MidState.SUSPENDED)
    delete_mid(c, reg, doomed.mid)
    pending = wrap_for_device(
        c, MidSecrets(os.urandom(16), os.urandom(16)), imsi=IMSI,
        algorithm=AlgorithmSpec(), amf=b"\x80\x00", sqn_ms=bytes(6),
    )  # fmt: skip
    old = reg.read()
    # the host's log replays to the TPM's AUDIT index; a reordered or truncated log does not
    assert verify_audit(c, old) and len(old.audit) >= 5  # 3 installs, a state change, a delete
    events = list(old.audit)
    assert not verify_audit(c, replace(old, audit=(events[1], events[0], *events[2:])))
    assert not verify_audit(c, replace(old, audit=tuple(events[:-1])))
    certs_before = {
        kind: cert.tbs_certificate_bytes for kind, cert in read_ek_certificates(c).items()
    }
    assert cli_main(["tpm", "mid", "reset", "--tpm", c.tcti, "--registry", str(reg.path)]) == 2
    capsys.readouterr()

    result = factory_reset(c, reg)

    assert result["ek_unchanged"] and result["ek_name_before"] == result["ek_name_after"]
    assert sorted(result["mids_removed"]) == sorted(old.mids)
    assert {k: v.tbs_certificate_bytes for k, v in read_ek_certificates(c).items()} == certs_before
    assert reg.read().mids == {} and reg.read_checked(c, old.ek_name).mids == {}
    assert len(old.mids) >= 2
    for record in old.mids.values():  # surviving blobs cannot be loaded any more
        pin = b"2468" if record.policy.pin else None  # the lockout test's MID has a PIN
        with pytest.raises(MidRefused), LoadedMid(c, record, pin=pin):
            pass
    with pytest.raises(PackageRejected, match="owner epoch"):
        import_package(c, reg, pending)
    assert verify_audit(c, reg.read())
    # the EK is persistent again where swtpm_setup put it
    from tpm2_pytss.constants import TPM2_CAP

    _, caps = c.esys.get_capability(TPM2_CAP.HANDLES, 0x81010001, 1)
    assert [int(x) for x in caps.data.handles][:1] == [0x81010001]


# ---- hardware: the same code paths on /dev/tpmrm0 ------------------------------------------


@pytest.mark.hardware
def test_hardware_tpm_mid_round_trip(tmp_path: Path) -> None:
    """Wrap, import, AKA, delete on a physical TPM (same code as swtpm). It defines NV indices
    and persists an SRK on that TPM, so it runs only when asked: TRELAB_HARDWARE_TPM=1."""
    if not os.path.exists("/dev/tpmrm0"):
        pytest.skip("no hardware TPM (/dev/tpmrm0 absent)")
    if os.environ.get("TRELAB_HARDWARE_TPM") != "1":
        pytest.skip("set TRELAB_HARDWARE_TPM=1 to let this test write NV on the real TPM")
    reg = Registry(tmp_path / "hw-mids.json")
    with TpmConnection("device:/dev/tpmrm0") as hw:
        k, opc = os.urandom(16), os.urandom(16)
        _, record = provision(hw, reg, k=k, secret=opc)
        try:
            rand = os.urandom(16)
            outcome = authenticate(hw, reg, record.mid, rand, fresh_autn(k, opc, rand, 1))
            assert isinstance(outcome.result, AkaSuccess)
        finally:
            delete_mid(hw, reg, record.mid)
