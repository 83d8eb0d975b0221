"""A MID's real-path AKA on the lean layer and on ESYS (the reference), on the same TPM: both
give the RES/CK/IK the network expects, both bus-protected, three E_K each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


@pytest.mark.parametrize(("kind", "pin"), [("load", None), ("use", None), ("use", b"2580")])
def test_a_mid_runs_the_same_aka_on_both_layers(
    private_swtpm: str, tmp_path: Path, kind: str, pin: bytes | None
) -> None:
    """The real path (registry, load, three E_K, commit) on the lean layer and on ESYS gives
    the RES/CK/IK the network expects; both are bus-protected and send three E_K. Use-gated
    MIDs re-run PolicyPCR, PolicyNV, PolicyCommandCode (and PolicyAuthValue for the PIN) in
    the lean layer's salted policy session before every E_K."""
    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(c, registry, kind=kind, pin=pin, imsi=f"00101999000{next(_IMSI)}")
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
            if kind == "use":
                assert names.count("policy_nv") >= 3 and names.count("policy_pcr") >= 3
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
