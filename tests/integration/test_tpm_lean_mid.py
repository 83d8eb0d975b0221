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
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.registry import Registry
from tpm.tss import CommandEvent

pytestmark = pytest.mark.lab


def test_a_mid_runs_the_same_aka_on_both_layers(private_swtpm: str, tmp_path: Path) -> None:
    """The real path (registry, load, three E_K, commit) on the lean layer and on ESYS gives
    the RES/CK/IK the network expects; both are bus-protected and send three E_K."""
    registry = Registry(tmp_path / "mids.json")
    with TpmConnection(private_swtpm) as c:
        mid = local_mid(c, registry, kind="load", imsi="001019990000777")
        network = Milenage(SoftwareAes(mid.k), mid.opc)
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
                    layer=layer,  # type: ignore[arg-type]
                )
            result = outcome.result
            assert isinstance(result, AkaSuccess) and outcome.layer == layer
            assert outcome.bus_protection and outcome.tpm_calls == 3
            expected = network.f2345(rand)
            assert (result.res, result.ck, result.ik) == (expected.res, expected.ck, expected.ik)
            assert [e.name for e in seen].count("encrypt_decrypt2") == 3
