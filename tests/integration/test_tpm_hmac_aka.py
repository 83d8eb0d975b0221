"""K inside a TPM without EncryptDecrypt: the HMAC-SHA-256 set (docs/hmac-aka.md) on the lab
swtpm. K is imported as a keyed-hash HMAC key, each f-function is one TPM2_HMAC in the MID's
salted session with decrypt|encrypt: the AKA results equal the software reference, and a
recording of the TPM bus (the threat suite's relay) shows neither K, OPc, the HMAC messages nor
RES/CK/IK/AK; the opt-out shows the messages in clear (so the check can fail). Sealed K stays
the labelled last resort; packages that mix K forms and algorithm sets are refused."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from typing import Any

import pytest

from aka.autn import build_autn
from aka.hmac_aka import HmacAka, SoftwareHmac, build_message
from aka.sqn import join_sqn
from aka.usim import AkaSuccess
from lab.lab import LabStatus
from threats.tpm_tools import BusTap
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.keyholder import SealedHmac, TpmHmac
from tpm.mid import LoadedMid, import_package, wrap_for_device
from tpm.mid_errors import PackageRejected
from tpm.package import AlgorithmSpec, MidSecrets, build_package, check_package
from tpm.registry import Registry
from trelab.errors import BadInput

pytestmark = pytest.mark.lab

CC_HMAC = 0x155
SPEC = AlgorithmSpec(name="hmac-sha256", key_bits=256, res_bits=64)


@dataclasses.dataclass(frozen=True)
class HmacMid:
    mid: str
    k: bytes = dataclasses.field(repr=False)
    opc: bytes = dataclasses.field(repr=False)
    pin: bytes | None = dataclasses.field(default=None, repr=False)


@pytest.fixture(scope="module")
def conn(lab_tcti: str) -> Iterator[TpmConnection]:
    with TpmConnection(lab_tcti) as c:
        yield c


@pytest.fixture(scope="module")
def registry(lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """The lab's one registry: REG_CTR is TPM-wide, so a second registry file on this TPM
    would leave the lab's own file (used by later modules and the threat suite) stale."""
    return Registry(lab.lab_dir / "mids.json")


def _provision(conn, registry, *, kind: str, imsi: str, form: str | None = None,
               pin: bytes | None = None) -> HmacMid:  # fmt: skip
    k, opc = os.urandom(32), os.urandom(32)
    package = wrap_for_device(
        conn, MidSecrets(k, opc, pin), imsi=imsi, algorithm=SPEC, amf=b"\x80\x00",
        sqn_ms=bytes(6), kind=kind, form=form,
    )  # fmt: skip
    record = import_package(conn, registry, package, activate=True)
    return HmacMid(record.mid, k, opc, pin)


@pytest.fixture(scope="module")
def mids(conn: TpmConnection, registry: Registry) -> dict[str, HmacMid]:
    return {
        "load": _provision(conn, registry, kind="load", imsi="001019990000201"),
        "use+pin": _provision(conn, registry, kind="use", imsi="001019990000202", pin=b"2468"),
    }


_seq = iter(range(1, 10_000))


def _challenge(mid: HmacMid) -> tuple[bytes, bytes, Any]:
    rand, sqn, amf = os.urandom(16), join_sqn(next(_seq), 0), b"\x80\x00"
    network = HmacAka(SoftwareHmac(mid.k), mid.opc, res_bits=SPEC.res_bits)
    mac, out = network.f1_f2345(rand, sqn, amf)
    return rand, build_autn(sqn, out.ak, amf, mac), out


def _hmac_commands(exchanges) -> list[tuple[int, bytes]]:
    """(session attributes, buffer as it crossed the bus) of each successful TPM2_HMAC: tag,
    size, code, one handle, the authorisation area (one session), then buffer (TPM2B)."""
    found = []
    for command, response in exchanges:
        if len(command) < 14 or struct.unpack(">I", command[6:10])[0] != CC_HMAC:
            continue
        if struct.unpack(">I", response[6:10])[0] != 0:
            continue
        offset = 14  # header (10) + keyHandle (4)
        auth_size = struct.unpack(">I", command[offset : offset + 4])[0]
        area = command[offset + 4 : offset + 4 + auth_size]
        nonce_size = struct.unpack(">H", area[4:6])[0]
        attributes = area[6 + nonce_size]
        params = command[offset + 4 + auth_size :]
        size = struct.unpack(">H", params[:2])[0]
        found.append((attributes, params[2 : 2 + size]))
    return found


def _tapped(lab: LabStatus, registry: Registry, mid: HmacMid, **kw: Any):
    rand, autn, expected = _challenge(mid)
    assert lab.swtpm.port is not None
    with BusTap(lab.swtpm.port) as tap:
        with TpmConnection(tap.tcti) as c:
            outcome = authenticate(c, registry, mid.mid, rand, autn, pin=mid.pin, **kw)
        return rand, expected, outcome, tap.captured(), tap.exchanges()


@pytest.mark.parametrize("layer", ["lean", "esys"])
@pytest.mark.parametrize("kind", ["load", "use+pin"])
def test_aka_with_k_as_tpm_hmac_key_matches_software_and_hides_the_bus(
    lab: LabStatus, registry: Registry, mids: dict[str, HmacMid], kind: str, layer: str
) -> None:
    mid = mids[kind]
    rand, expected, outcome, capture, exchanges = _tapped(lab, registry, mid, layer=layer)
    assert outcome.layer == layer
    result = outcome.result
    assert isinstance(result, AkaSuccess)
    assert (result.res, result.ck, result.ik) == (expected.res, expected.ck, expected.ik)
    assert outcome.mode == "hmac" and outcome.bus_protection is True and outcome.tpm_calls == 5
    assert "note" not in outcome.to_json()
    commands = _hmac_commands(exchanges)
    assert len(commands) == 5
    messages = {
        build_message(f, n, mid.opc, rand)
        for f, n in (("f2", 8), ("f3", 16), ("f4", 16), ("f5", 6))
    }
    for attributes, buffer in commands:
        assert attributes & 0x60 == 0x60  # decrypt | encrypt
        assert buffer not in messages and mid.opc not in buffer and rand not in buffer
    for secret in (mid.k, mid.opc, rand, result.res, result.ck, result.ik, expected.ak):
        assert secret not in capture


def test_opt_out_shows_the_hmac_messages_and_says_so(
    lab: LabStatus, registry: Registry, mids: dict[str, HmacMid]
) -> None:
    mid = mids["load"]
    rand, expected, outcome, capture, exchanges = _tapped(lab, registry, mid, bus_protection=False)
    assert isinstance(outcome.result, AkaSuccess) and outcome.bus_protection is False
    assert "OPc, RAND and the HMAC outputs" in outcome.to_json()["note"]
    buffers = {buffer for attributes, buffer in _hmac_commands(exchanges)}
    assert build_message("f3", 16, mid.opc, rand) in buffers  # in clear: the check can fail
    assert expected.ck in capture and mid.k not in capture  # K never leaves the TPM


@pytest.mark.parametrize("layer", ["lean", "esys"])
def test_tpm_hmac_equals_the_standard_library(
    conn: TpmConnection, registry: Registry, mids: dict[str, HmacMid], layer: Any
) -> None:
    """TPM2_HMAC with K on the lean layer and through ESYS (the reference) equals the
    standard library's HMAC-SHA-256 over random messages, protected and not."""
    for kind in ("load", "use+pin"):
        mid = mids[kind]
        record = registry.read().get(mid.mid)
        for protect in (True, False):
            with LoadedMid(
                conn, record, pin=mid.pin, bus_protection=protect, layer=layer
            ) as loaded:
                assert loaded.layer == layer
                assert isinstance(loaded.holder, TpmHmac) and loaded.mode == "hmac"
                assert loaded.holder.bus_protected is protect
                for size in (1, 76, 1024):
                    message = os.urandom(size)
                    assert loaded.holder.mac(message) == hmac.digest(
                        mid.k, message, hashlib.sha256
                    ), (kind, protect, size)
                with pytest.raises(BadInput):
                    loaded.holder.mac(bytes(1025))
                assert mid.k.hex() not in repr(loaded.holder)
        with pytest.raises(BadInput, match="HMAC key"):
            LoadedMid(conn, record, pin=mid.pin, mode="ecb")
        with pytest.raises(BadInput, match="HMAC key"):
            LoadedMid(conn, record, pin=mid.pin, mode="sealed")


def test_sealed_k_is_the_labelled_last_resort(
    lab: LabStatus, conn: TpmConnection, registry: Registry
) -> None:
    mid = _provision(conn, registry, kind="load", imsi="001019990000203", form="sealed")
    _, expected, outcome, capture, _ = _tapped(lab, registry, mid)
    assert isinstance(outcome.result, AkaSuccess) and outcome.result.res == expected.res
    assert outcome.mode == "sealed" and "unsealed into host memory" in outcome.to_json()["note"]
    assert mid.k not in capture and mid.opc not in capture
    record = registry.read().get(mid.mid)
    with LoadedMid(conn, record) as loaded:
        assert isinstance(loaded.holder, SealedHmac)


def test_k_forms_and_algorithm_sets_do_not_mix(conn: TpmConnection) -> None:
    from tpm.mid import device_info
    from tpm.package import MidPolicy

    info = device_info(conn, "sha256:0")
    k, opc = os.urandom(32), os.urandom(32)

    def policy(form: str) -> MidPolicy:
        return MidPolicy(kind="load", selection="sha256:0", pcr_digest=info.pcr_digest,
                         slot=info.free_slot, k_form=form)  # type: ignore[arg-type]  # fmt: skip

    common = dict(seq=info.next_seq, imsi="001019990000299", amf=b"\x80\x00", sqn_ms=bytes(6))
    with pytest.raises(BadInput, match="hmac"):
        build_package(info.target, MidSecrets(k, opc), algorithm=SPEC, policy=policy("symcipher"),
                      **common)  # type: ignore[arg-type]  # fmt: skip
    good = build_package(info.target, MidSecrets(k, opc), algorithm=SPEC, policy=policy("hmac"),
                         **common)  # type: ignore[arg-type]  # fmt: skip
    check_package(good)
    # The manifest says Milenage: an HMAC-key K cannot serve it.
    with pytest.raises(PackageRejected, match="hmac-sha256"):
        check_package(dataclasses.replace(good, algorithm=AlgorithmSpec()))
    # The manifest says symcipher but the object is the HMAC key.
    relabelled = dataclasses.replace(good, policy=dataclasses.replace(good.policy, k_form="sealed"))
    with pytest.raises(PackageRejected, match="sealed data"):
        check_package(relabelled)
    # Round trip through JSON keeps the algorithm; strict parsing of its parameters.
    from tpm.package import Package

    assert Package.from_json(good.to_json()).algorithm == SPEC
    bad = good.to_json()
    bad["algorithm"] = {"name": "hmac-sha256", "key_bits": 256, "res_bits": 48}
    with pytest.raises(BadInput, match="res_bits"):
        Package.from_json(bad)
    bad["algorithm"] = {"name": "hmac-sha256", "key_bits": 256, "res_bits": 64, "mac_bits": 64}
    with pytest.raises(BadInput, match="key_bits and res_bits only"):
        Package.from_json(bad)


# ---- end to end: the operator server provisions the set, the device attaches ------------------


def test_provision_and_attach_with_the_hmac_set_k_never_outside_the_tpm(
    lab: LabStatus, tmp_path
) -> None:
    """An SHO configured with the HMAC-SHA-256 set: ``trelab provision`` against the served
    operator (HTTP), then attach and a resynchronisation, every TPM command through the bus
    relay. The MID holds K as a TPM HMAC key; the HSS's own K, OPc and the session's RES/CK/IK
    never appear on the TPM bus."""
    from host.attach import attach_tpm
    from host.provision import provision
    from tests.integration.test_agent_provision import network

    def hmac_sho(doc: dict[str, Any]) -> None:
        doc["shos"]["sho-a"]["algorithm"] = "hmac-sha256"
        doc["shos"]["sho-a"]["params"] = {"key_bits": 256, "res_bits": 64}

    registry = Registry(lab.lab_dir / "mids.json")  # the lab's one registry (REG_CTR is TPM-wide)
    assert lab.swtpm.port is not None
    with network(tmp_path, lab, edit=hmac_sho) as net, BusTap(lab.swtpm.port) as tap:
        with TpmConnection(tap.tcti) as c:
            done = provision(c, registry, net.http, net.trust, sho="sho-a", network=net.url)
            mid = done.finished
            record = registry.read().get(mid.mid_id)
            assert record.algorithm == SPEC and record.policy.k_form == "hmac"
            first = attach_tpm(c, registry, net.http, mid_id=mid.mid_id)
            assert first.accepted
            with net.store.transaction() as tx:  # the HSS falls behind: AUTS, resync
                hss = tx.hss(mid.imsi)
                assert hss is not None and hss.algorithm == "hmac-sha256"
                tx.put_hss(dataclasses.replace(hss, sqn={**hss.sqn, "seq_he": 0, "ind": 0}))
            again = attach_tpm(c, registry, net.http, mid_id=mid.mid_id)
            assert again.accepted and again.resynchronised
        capture = tap.captured()
        hmac_commands = _hmac_commands(tap.exchanges())
    assert len(hss.k) == 32 and len(hss.opc) == 32
    # f2…f5 and f1 per AUTN (5); the stale one adds f5* and f1* for AUTS: 5 + (5 + 2) + 5
    assert len(hmac_commands) == 17 and all(a & 0x60 == 0x60 for a, _ in hmac_commands)
    assert hss.k not in capture and hss.opc not in capture
