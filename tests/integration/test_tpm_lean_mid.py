"""A MID's real-path AKA on the lean layer and on ESYS (the reference), on the same TPM: both
give the RES/CK/IK the network expects, both bus-protected, three E_K each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.usim import AkaSuccess
from threats.tpm_tools import fresh_autn, local_mid
from tpm import nv
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.mid import ek_name
from tpm.registry import Registry
from tpm.tss import CommandEvent

pytestmark = pytest.mark.lab


_IMSI = iter(range(1000, 2000))
_OPERATOR = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize(
    ("kind", "pin"),
    [("load", None), ("use", None), ("use", b"2580"), ("authorize", None), ("authorize", b"1357")],
)
def test_a_mid_runs_the_same_aka_on_both_layers(
    private_swtpm: str, tmp_path: Path, kind: str, pin: bytes | None
) -> None:
    """The real path (registry, load, three E_K, commit) on the lean layer and on ESYS gives
    the RES/CK/IK the network expects; both are bus-protected and send three E_K. Use-gated
    MIDs re-run PolicyPCR, PolicyNV, PolicyCommandCode (and PolicyAuthValue for the PIN) in
    the lean layer's salted policy session before every E_K; operator-updatable ones run the
    approval's PolicyPCR and PolicyNV, then PolicyAuthorize with one VerifySignature ticket
    per load."""
    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(
            c, registry, kind=kind, pin=pin, imsi=f"00101999000{next(_IMSI)}",
            operator_key=_OPERATOR if kind == "authorize" else None,
        )  # fmt: skip
        network = Milenage(SoftwareAes(mid.k), mid.opc)
        before = registry.read().version
        for seq, layer in enumerate(("esys", "lean", "esys", "lean"), start=1):
            rand = os.urandom(16)
            autn = fresh_autn(mid.k, mid.opc, rand, seq)
            seen: list[CommandEvent] = []
            with c.transport.observe(seen.append):
                outcome = authenticate(
                    c,
                    registry,
                    mid.record.mid,
                    rand,
                    autn,
                    pin=pin,
                    layer=layer,  # type: ignore[arg-type]
                )
            result = outcome.result
            assert isinstance(result, AkaSuccess) and outcome.layer == layer
            assert outcome.bus_protection and outcome.tpm_calls == 3
            expected = network.f2345(rand)
            assert (result.res, result.ck, result.ik) == (expected.res, expected.ck, expected.ik)
            names = [e.name for e in seen if e.rc == 0]  # TPM_RC_RETRY: sent again
            assert names.count("encrypt_decrypt2") == 3
            if kind in ("use", "authorize"):
                assert names.count("policy_nv") >= 3 and names.count("policy_pcr") >= 3
            if kind == "authorize":  # OPc's Unseal and the three E_K
                assert names.count("policy_authorize") == 4
                assert names.count("verify_signature") == names.count("load_external") == 1
            if layer == "lean" and seq > 2:
                # the SRK and the EK are known to the connection by now; REG_CTR is read once
                # (checked) and incremented once (the commit reuses the value read under the lock)
                assert not {"get_capability", "read_public"} & set(names)
                assert names.count("nv_read") == 1 and names.count("nv_increment") == 1
        # the commits left a registry that verifies against REG_CTR
        with registry.locked():
            data = registry.read_checked(c, ek_name(c))
        assert data.version == nv.read_counter(c, nv.REG_CTR) == before + 4
        # what the registry remembers of its last write is what a fresh parse of the file gives
        assert Registry(registry.path).read() == data


def test_a_wrong_pin_is_refused_on_the_lean_layer(private_swtpm: str, tmp_path: Path) -> None:
    from tpm.mid_errors import PinRejected

    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(c, registry, kind="use", pin=b"1234", imsi="001019990002999")
        rand = os.urandom(16)
        with pytest.raises(PinRejected):
            authenticate(
                c, registry, mid.record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 1),
                pin=b"9999",
            )  # fmt: skip
        outcome = authenticate(
            c, registry, mid.record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 2), pin=b"1234"
        )
        assert isinstance(outcome.result, AkaSuccess) and outcome.layer == "lean"


@pytest.mark.parametrize("importer", ["esys", "lean"])
def test_a_mid_imported_on_either_layer_runs_on_both(
    private_swtpm: str, tmp_path: Path, importer: str
) -> None:
    """TPM2_Import and the proving Loads through ESYS or the lean layer give blobs the other
    layer loads: the two importers agree on what the TPM accepted."""
    from tpm.mid import import_package, wrap_for_device
    from tpm.package import AlgorithmSpec, MidSecrets

    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        k, opc = os.urandom(16), os.urandom(16)
        imported: list[CommandEvent] = []
        package = wrap_for_device(
            c, MidSecrets(k, opc), imsi=f"00101999000{next(_IMSI)}", algorithm=AlgorithmSpec(),
            amf=b"\x80\x00", sqn_ms=bytes(6), kind="load",
        )  # fmt: skip
        with c.transport.observe(imported.append):
            record = import_package(
                c,
                registry,
                package,
                activate=True,
                layer=importer,  # type: ignore[arg-type]
            )
        assert [e.name for e in imported if e.rc == 0].count("import_") == 3
        network = Milenage(SoftwareAes(k), opc)
        for seq, layer in enumerate(("esys", "lean"), start=1):
            rand = os.urandom(16)
            outcome = authenticate(
                c, registry, record.mid, rand, fresh_autn(k, opc, rand, seq),
                layer=layer,  # type: ignore[arg-type]
            )  # fmt: skip
            assert isinstance(outcome.result, AkaSuccess)
            assert outcome.result.res == network.f2345(rand).res


def test_the_registry_another_process_changed_is_read_afresh(
    private_swtpm: str, tmp_path: Path
) -> None:
    """This process keeps the registry's parse between AKAs. Another process (``trelab tpm
    aka``, then ``trelab mid delete --local``) moves the SQN and then deletes the MID: the
    next AKA here sees both: a replay of the other process's challenge is a synchronisation
    failure (never accepted against the older SQN this process saw), a fresher one is
    accepted, and the deleted MID is unknown."""
    import json
    import subprocess
    import sys

    from aka.usim import AkaSyncFailure
    from tpm.mid_errors import UnknownMid

    registry = Registry(tmp_path / "mids.json")
    cli = [sys.executable, "-m", "host.cli"]
    where = ["--tpm", private_swtpm, "--registry", str(registry.path)]
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(c, registry, kind="load", imsi=f"00101999000{next(_IMSI)}")
        rand = os.urandom(16)
        first = authenticate(c, registry, mid.record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 1))
        assert isinstance(first.result, AkaSuccess)
        other_rand = os.urandom(16)
        other_autn = fresh_autn(mid.k, mid.opc, other_rand, 2)
        done = subprocess.run(
            [*cli, "tpm", "aka", *where, "--mid", mid.record.mid, "--rand", other_rand.hex(),
             "--autn", other_autn.hex(), "--json"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["result"] == "success"
        replayed = authenticate(c, registry, mid.record.mid, other_rand, other_autn)
        assert isinstance(replayed.result, AkaSyncFailure)
        rand = os.urandom(16)
        fresh = authenticate(c, registry, mid.record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 3))
        assert isinstance(fresh.result, AkaSuccess)
        assert registry.read().get(mid.record.mid).sqn.highest_seq == 3
        done = subprocess.run(
            [*cli, "mid", "delete", "--local", *where, "--mid", mid.record.mid],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rand = os.urandom(16)
        with pytest.raises(UnknownMid):
            authenticate(c, registry, mid.record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 4))


def _transients(c: TpmConnection) -> list[int]:
    """Loaded objects and sessions: every load and failed use flushes what it made."""
    from tpm import lean_commands

    return [h for first in (0x80000000, 0x02000000, 0x03000000)
            for h in lean_commands.handles(c, first, 64) if h >> 24 == first >> 24]  # fmt: skip


def test_an_operator_updatable_mid_follows_its_approval_on_both_layers(
    private_swtpm: str, tmp_path: Path
) -> None:
    """An operator-updatable MID bound to PCR 16: a firmware measurement refuses it on both
    layers alike; the operator's new approval (``reauthorize``) lets it run again on both,
    the lean layer sending the new approval's PolicyPCR, VerifySignature and PolicyAuthorize."""
    from threats.tpm_tools import extend_pcr, reset_pcr
    from tpm.mid import reauthorize
    from tpm.mid_errors import MidRefused

    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(
            c, registry, kind="authorize", selection="sha256:0,16", operator_key=_OPERATOR,
            imsi=f"00101999000{next(_IMSI)}",
        )  # fmt: skip
        seq = iter(range(1, 100))

        def aka(layer: str) -> AkaSuccess:
            rand = os.urandom(16)
            outcome = authenticate(
                c, registry, mid.record.mid, rand, fresh_autn(mid.k, mid.opc, rand, next(seq)),
                layer=layer,  # type: ignore[arg-type]
            )  # fmt: skip
            assert isinstance(outcome.result, AkaSuccess) and outcome.layer == layer
            assert outcome.result.res == Milenage(SoftwareAes(mid.k), mid.opc).f2345(rand).res
            return outcome.result

        aka("lean"), aka("esys")
        extend_pcr(c, 16, os.urandom(32))  # e.g. a firmware update was measured
        try:
            refusals = []
            for layer in ("lean", "esys"):
                with pytest.raises(MidRefused) as refused:
                    aka(layer)
                refusals.append(str(refused.value))
            assert refusals[0] == refusals[1] and "PolicyPCR" in refusals[0]
            assert _transients(c) == []
            reauthorize(c, registry, mid.record.mid, _OPERATOR)  # the operator approves
            seen: list[CommandEvent] = []
            with c.transport.observe(seen.append):
                aka("lean")
            names = [e.name for e in seen if e.rc == 0]
            assert names.count("verify_signature") == 1 and names.count("policy_authorize") == 4
            aka("esys")
        finally:
            reset_pcr(c, 16)
        # the new approval holds only for the new PCR value
        for layer in ("lean", "esys"):
            with pytest.raises(MidRefused, match="PolicyPCR"):
                aka(layer)
        assert _transients(c) == []


def test_a_forged_approval_is_refused_on_both_layers(private_swtpm: str, tmp_path: Path) -> None:
    """The TPM, not the host, refuses what the operator did not sign, on each layer with the
    same typed error: an approval signed by another key (VerifySignature fails), one the
    operator signed for other PCR values (PolicyPCR fails), a signature that is not DER
    ECDSA (refused before any command), a MID not ACTIVE (PolicyNV fails), a wrong PIN. An
    approval cannot be absent: the policy itself refuses to exist without one."""
    from dataclasses import replace

    from tpm import lean
    from tpm.mid import LoadedMid, pcr_values, set_state
    from tpm.mid_errors import MidRefused, PinRejected
    from tpm.package import operator_public, sign_approval
    from tpm.policy import pcr_digest
    from trelab.errors import BadInput

    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(
            c, registry, kind="authorize", pin=b"8642", operator_key=_OPERATOR,
            imsi=f"00101999000{next(_IMSI)}",
        )  # fmt: skip
        record, policy = mid.record, mid.record.policy
        now = pcr_digest(pcr_values(c, policy.selection))
        stranger = ec.generate_private_key(ec.SECP256R1())
        forged = {
            "another key": replace(
                policy, approval=sign_approval(stranger, policy.selection, now, record.slot)
            ),
            "other PCRs": replace(
                policy,
                approval=sign_approval(_OPERATOR, policy.selection, os.urandom(32), record.slot),
            ),
            # the record names the stranger's key too: PolicyAuthorize passes, under the
            # stranger's name, and the policy digest is not OPc's policy
            "another key named": replace(
                policy,
                operator_key=operator_public(stranger),
                approval=sign_approval(stranger, policy.selection, now, record.slot),
            ),
        }
        expected = {
            "another key": ("PolicyAuthorize", lean.CC.VERIFY_SIGNATURE),
            "other PCRs": ("PolicyPCR", lean.CC.POLICY_PCR),
            "another key named": ("unsealing OPc/TOPc", lean.CC.UNSEAL),
        }
        for what, forged_policy in forged.items():
            tampered = replace(record, policy=forged_policy)
            messages = []
            for layer in ("lean", "esys"):
                seen: list[CommandEvent] = []
                loaded = LoadedMid(c, tampered, pin=b"8642", layer=layer)
                assert loaded.layer == layer  # the lean layer runs it, no ESYS fallback
                with c.transport.observe(seen.append), pytest.raises(MidRefused) as refused:
                    loaded.__enter__()
                messages.append(str(refused.value))
                refusing = [e.code for e in seen if e.rc != 0]
                assert refusing == [expected[what][1]], (what, refusing)  # the TPM refused
            assert all(m.startswith(expected[what][0]) for m in messages), (what, messages)
            assert _transients(c) == []
        assert policy.approval is not None
        not_der = replace(policy.approval, signature=b"\x30\x02\x00\x00")
        for layer in ("lean", "esys"):
            loaded = LoadedMid(
                c, replace(record, policy=replace(policy, approval=not_der)), pin=b"8642",
                layer=layer,  # type: ignore[arg-type]
            )  # fmt: skip
            with pytest.raises(BadInput, match="not DER ECDSA"):
                loaded.__enter__()
        with pytest.raises(BadInput, match="approval"):
            replace(policy, approval=None)
        assert _transients(c) == []
        try:
            for layer in ("lean", "esys"):
                rand = os.urandom(16)
                with pytest.raises(PinRejected):
                    authenticate(
                        c, registry, record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 1),
                        pin=b"0000", layer=layer,  # type: ignore[arg-type]
                    )  # fmt: skip
        finally:
            c.esys.dictionary_attack_lock_reset()  # the lab's lockout auth is empty
        suspended = set_state(c, registry, record.mid, nv.MidState.SUSPENDED)
        messages = []
        for layer in ("lean", "esys"):
            rand = os.urandom(16)
            with pytest.raises(MidRefused) as refused:
                authenticate(
                    c, registry, record.mid, rand, fresh_autn(mid.k, mid.opc, rand, 1),
                    pin=b"8642", layer=layer, check_state=False,  # type: ignore[arg-type]
                )  # fmt: skip
            messages.append(str(refused.value))
        assert messages[0] == messages[1] and "PolicyNV" in messages[0], messages
        assert suspended.state == "suspended"
        assert _transients(c) == []
