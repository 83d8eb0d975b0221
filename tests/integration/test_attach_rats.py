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

from aka.suci import Profile, conceal
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


def test_tpm_mid_attaches_over_eps_and_5g(
    lab: LabStatus, lab_registry: Registry, tmp_path: Path
) -> None:
    from host.attach import attach_tpm
    from tpm.suci import holder_for

    with network(tmp_path, lab) as net:
        registry = lab_registry
        mid = provision(lab, net, registry, "sho-a").finished
        assert attach(lab, net, registry, mid.mid_id).accepted  # 3G, as before
        key_a = _rotate(net, "A")
        key_b = _rotate(net, "B")
        for rat, profile, key in (("eps", None, None), ("5g", None, None),
                                  ("5g", "A", key_a), ("5g", "B", key_b)):  # fmt: skip
            with TpmConnection(lab.tcti) as conn:
                agreement, where = holder_for(conn, Profile[profile] if profile else Profile.NULL)

                def make(imsi: str, p: Any = profile, k: Any = key, a: Any = agreement) -> str:
                    return conceal(
                        f"imsi-{imsi}",
                        p,
                        hn_public=bytes.fromhex(k["public"]),
                        key_id=k["key_id"],
                        agreement=a,
                    ).to_string()

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
            if profile == "B":
                assert "ECDH_KeyGen" in where  # the ephemeral key was the TPM's
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
        assert wrong.returncode == 1 and "no usable key" in wrong.stderr
        assert wrong.stderr.count("\n") == 1


def test_tpm_makes_profile_b_sucis_the_home_network_opens(lab: LabStatus) -> None:
    """TPM2_ECDH_KeyGen against the TS 33.501 C.4.4 home network key: the C.4 private key
    opens every SUCI (so Z is d_hn·Q_eph), each with a fresh ephemeral key from the TPM."""
    from aka.suci import Suci, deconceal
    from tpm.suci import TpmAgreement, holder_for

    data = Path(__file__).resolve().parents[2] / "aka" / "data" / "suci_33501_c4.json"
    v = json.loads(data.read_text())["suci"][2]
    with TpmConnection(lab.tcti) as conn:
        agreement = TpmAgreement(conn)
        sucis = [
            conceal(
                v["supi"], "B", hn_public=bytes.fromhex(v["hn_public"]), key_id=9,
                mnc_length=3, agreement=agreement,
            )
            for _ in range(3)
        ]  # fmt: skip
        _, where_b = holder_for(conn, Profile.B)
        _, where_a = holder_for(conn, Profile.A)
        with pytest.raises(Exception, match="Profile B"):
            agreement(Profile.A, bytes(32))
    assert "TPM2_ECDH_KeyGen" in where_b and "no X25519" in where_a
    assert len({s.scheme_output[:33] for s in sucis}) == 3
    for suci in sucis:
        assert suci.scheme_output[0] in (2, 3)
        assert deconceal(Suci.parse(suci.to_string()), bytes.fromhex(v["hn_private"])) == v["supi"]


def test_usim_computes_the_suci_it_attaches_with(lab: LabStatus, tmp_path: Path) -> None:
    """A card of its own on reader 1, personalised with the SHO's current Profile B key: GET
    IDENTITY through pcscd gives the SUCI, the SIDF opens it, 5G AKA follows."""
    from firmware_stubs.usim.personalise import hss_record
    from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
    from tests.card_process import READER_1, CardProcess
    from tests.usim_vectors import unique_iccid

    with network(tmp_path, lab) as net:
        key = _rotate(net, "B")
        doc = dict(DEFAULT_PROFILE) | {
            "iccid": unique_iccid(),
            "suci": {
                "routing_indicator": "42",
                "schemes": ["B", "null"],
                "home_network_keys": [
                    {"id": key["key_id"], "profile": "B", "public": key["public"]}
                ],
            },
        }
        path = tmp_path / "card-hss.json"
        path.write_text(json.dumps(hss_record(parse_profile(doc)).to_json()))
        added = trelab(
            "operator", "add-subscriber", "--hss-record", str(path), "--sho", "sho-a",
            "--config", str(net.config_path), "--db", str(net.db), "--json",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        card = CardProcess(tmp_path / "card", doc).start()
        try:
            done = trelab(
                "attach", "--reader", READER_1, "--pin", "1234", "--network", net.url,
                "--rat", "5g", "--suci-profile", "usim", "--json",
            )  # fmt: skip
            # the ME's SUCI with the key the card carries in DF.5GS (no --hn-pub)
            by_me = trelab(
                "attach", "--reader", READER_1, "--pin", "1234", "--network", net.url,
                "--rat", "5g", "--suci-profile", "B", "--json",
            )  # fmt: skip
        finally:
            card.stop()
        assert by_me.returncode == 0, by_me.stderr
        me = json.loads(by_me.stdout)
        assert me["identity"] == "suci" and me["accepted"] is True
        assert "EF.SUCI_Calc_Info" in me["suci_ephemeral_key"]
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["identity"] == "suci" and out["suci_ephemeral_key"] == "usim (GET IDENTITY)"
        assert out["accepted"] is True and out["keys_match"] is True
        sucis = [(s, d["key_id"], d["profile"]) for e, s, d in net.events() if e == "suci"]
        assert sucis == [("001010123456789", key["key_id"], 2)] * 2
