"""EPS AKA and 5G AKA on both TREs against the SHO: a TPM MID (K in the lab swtpm, provisioned
by the host agent) and the emulated USIM on the real pcscd/vpcd reader, as ``trelab attach
--rat``; the SHO (HSS/UDM + AUSF + SEAF) and the ME confirm the same K_ASME or K_SEAF, and a
5G attach may send a SUCI the SHO's SIDF de-conceals with the key ``trelab operator
hn-key-rotate`` made."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aka.suci import conceal
from lab.lab import LabStatus
from tests.integration.test_agent_provision import (
    _card_subscriber,
    attach,
    network,
    provision,
    trelab,
)
from tpm.connection import TpmConnection
from tpm.registry import Registry

pytestmark = pytest.mark.lab


def _rotate(net: Any, profile: str) -> dict[str, Any]:
    done = trelab(
        "operator", "hn-key-rotate", "--sho", "sho-a", "--profile", profile,
        "--config", str(net.config_path), "--db", str(net.db), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    key: dict[str, Any] = json.loads(done.stdout)
    assert "private" not in key and key["state"] == "current"
    return key


def test_tpm_mid_attaches_over_eps_and_5g(lab: LabStatus, tmp_path: Path) -> None:
    from host.attach import attach_tpm

    with network(tmp_path, lab) as net:
        registry = Registry(tmp_path / "mids.json")
        mid = provision(lab, net, registry, "sho-a").finished
        assert attach(lab, net, registry, mid.mid_id).accepted  # 3G, as before
        key_a = _rotate(net, "A")
        key_b = _rotate(net, "B")
        for rat, profile, key in (("eps", None, None), ("5g", None, None),
                                  ("5g", "A", key_a), ("5g", "B", key_b)):  # fmt: skip

            def make(imsi: str, p: Any = profile, k: Any = key) -> str:
                return conceal(
                    f"imsi-{imsi}", p, hn_public=bytes.fromhex(k["public"]), key_id=k["key_id"]
                ).to_string()

            with TpmConnection(lab.tcti) as conn:
                done = attach_tpm(
                    conn,
                    registry,
                    net.inproc,
                    mid_id=mid.mid_id,
                    rat=rat,  # type: ignore[arg-type]
                    conceal=make if profile else None,
                )
            assert done.accepted and done.keys_match is True, (rat, profile, done.reason)
            assert ("K_SEAF" if rat == "5g" else "K_ASME") in done.reason
        events = net.events()
        rats = [d.get("rat") for e, s, d in events if e == "attach" and s == mid.imsi]
        assert rats == ["3g", "eps", "5g", "5g", "5g"]
        sucis = [(s, d["key_id"]) for e, s, d in events if e == "suci"]
        assert sucis == [(mid.imsi, key_a["key_id"]), (mid.imsi, key_b["key_id"])]


def test_card_attaches_over_eps_and_5g_through_pcsc(
    lab: LabStatus, usim_reader: str, tmp_path: Path
) -> None:
    with network(tmp_path, lab) as net:
        _card_subscriber(net, tmp_path)
        base = ["attach", "--reader", usim_reader, "--pin", "1234", "--network", net.url, "--json"]
        outs = {}
        for rat in ("3g", "eps", "5g"):
            done = trelab(*base, "--rat", rat)
            assert done.returncode == 0, done.stderr
            outs[rat] = json.loads(done.stdout)
            assert outs[rat]["accepted"] is True and outs[rat]["rat"] == rat
        assert outs["eps"]["keys_match"] is True and "K_ASME" in outs["eps"]["reason"]
        assert outs["5g"]["keys_match"] is True and "K_SEAF" in outs["5g"]["reason"]
        key = _rotate(net, "B")
        concealed = trelab(
            *base, "--rat", "5g", "--suci-profile", "B", "--hn-pub", key["public"],
            "--hn-key-id", str(key["key_id"]),
        )  # fmt: skip
        assert concealed.returncode == 0, concealed.stderr
        out = json.loads(concealed.stdout)
        assert out["identity"] == "suci" and out["accepted"] is True and out["keys_match"]
        wrong = trelab(
            *base, "--rat", "5g", "--suci-profile", "B", "--hn-pub", key["public"],
            "--hn-key-id", str((key["key_id"] + 7) % 256),
        )  # fmt: skip
        assert wrong.returncode == 1 and "unknown-hn-key" in wrong.stderr
        assert wrong.stderr.count("\n") == 1
