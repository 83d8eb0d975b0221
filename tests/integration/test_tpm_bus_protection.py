"""Bus protection of the TPM AKA (threat 9, §7.1.2.1), against the lab's swtpm through the
threat suite's bus relay: by default every E_K exchange is parameter-encrypted both ways in a
salted session, for every MID kind and mode, with the same AKA results as the opt-out; the
opt-out (``bus_protection=False``, ``--no-bus-protection``) shows RAND ⊕ OPc on the bus and
says so; TPM2_EncryptDecrypt (v1) cannot be protected and is refused unless opted out.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from aka.keyholder import SoftwareAes
from aka.usim import AkaSuccess
from lab.lab import LabStatus
from threats.checks.t09_monitoring import decode_recording
from threats.tpm_tools import BusTap, LocalMid, fresh_autn, local_mid
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.keyholder import SymmetricSupport, TpmBlockCipher
from tpm.mid import LoadedMid
from tpm.registry import Registry
from trelab.errors import BadInput, Unavailable

pytestmark = [pytest.mark.lab, pytest.mark.symmetric_k]


@pytest.fixture(scope="module")
def conn(lab_tcti: str) -> Iterator[TpmConnection]:
    with TpmConnection(lab_tcti) as c:
        yield c


@pytest.fixture(scope="module")
def registry(lab: LabStatus) -> Registry:
    return Registry(lab.lab_dir / "mids.json")


@pytest.fixture(scope="module")
def mids(conn: TpmConnection, registry: Registry) -> dict[str, LocalMid]:
    return {
        "load": local_mid(conn, registry, kind="load", imsi="001019990000101"),
        "use": local_mid(conn, registry, kind="use", imsi="001019990000102"),
        "use+pin": local_mid(conn, registry, kind="use", pin=b"1357", imsi="001019990000103"),
    }


_seq = iter(range(1, 10_000))


def _live_handles(tcti: str) -> list[int]:
    from tpm2_pytss.constants import TPM2_CAP

    found = []
    with TpmConnection(tcti) as c:
        for first in (0x80000000, 0x02000000, 0x03000000):
            _, caps = c.esys.get_capability(TPM2_CAP.HANDLES, first, 64)
            found += [int(h) for h in caps.data.handles if int(h) >> 24 == first >> 24]
    return found


def _tapped_aka(lab: LabStatus, registry: Registry, mid: LocalMid, **kw: Any) -> Any:
    rand = os.urandom(16)
    assert lab.swtpm.port is not None
    with BusTap(lab.swtpm.port) as tap:
        with TpmConnection(tap.tcti) as c:
            outcome = authenticate(
                c,
                registry,
                mid.record.mid,
                rand,
                fresh_autn(mid.k, mid.opc, rand, next(_seq)),
                pin=mid.pin,
                **kw,
            )
        capture, exchanges = tap.captured(), tap.exchanges()
    return rand, outcome, capture, exchanges


@pytest.mark.parametrize(
    ("kind", "mode"), [("load", "ecb"), ("load", "cfb"), ("use", "ecb"), ("use+pin", "cfb")]
)
def test_default_aka_encrypts_every_e_k_exchange(
    lab: LabStatus, registry: Registry, mids: dict[str, LocalMid], kind: str, mode: str
) -> None:
    mid = mids[kind]
    rand, outcome, capture, exchanges = _tapped_aka(lab, registry, mid, mode=mode)
    assert isinstance(outcome.result, AkaSuccess)
    assert outcome.bus_protection is True and outcome.to_json()["bus_protection"] is True
    decoded, seen = decode_recording(exchanges)
    assert len(decoded) == 3 and all(d.decrypt and d.encrypt and d.salted for d in decoded)
    assert seen["salted_sessions"] >= 1
    first_input = bytes(a ^ b for a, b in zip(rand, mid.opc, strict=True))
    for d in decoded:  # the E_K inputs (X1 = RAND ⊕ OPc) never appear in clear
        assert first_input not in d.in_data
    result = outcome.result
    for secret in (mid.k, mid.opc, result.res, result.ck, result.ik, first_input):
        assert secret not in capture
    assert _live_handles(lab.tcti) == []


@pytest.mark.parametrize("mode", ["ecb", "cfb"])
def test_opt_out_sends_e_k_in_clear_and_says_so(
    lab: LabStatus, registry: Registry, mids: dict[str, LocalMid], mode: str
) -> None:
    mid = mids["load"]
    rand, outcome, capture, exchanges = _tapped_aka(
        lab, registry, mid, mode=mode, bus_protection=False
    )
    assert isinstance(outcome.result, AkaSuccess) and outcome.bus_protection is False
    data = outcome.to_json()
    assert data["bus_protection"] is False and "opt-out" in data["note"]
    decoded, _ = decode_recording(exchanges)
    assert len(decoded) == 3 and not any(d.decrypt or d.encrypt for d in decoded)
    # X1 = RAND ⊕ OPc is the first block of inData in both modes (CFB: IV 0, X1 ‖ … ‖ 0)
    assert decoded[0].in_data[:16] == bytes(a ^ b for a, b in zip(rand, mid.opc, strict=True))
    assert mid.k not in capture and mid.opc not in capture  # OPc's Unseal stays encrypted


def test_protected_and_opt_out_agree_with_software_over_many_blocks(
    conn: TpmConnection, registry: Registry, mids: dict[str, LocalMid]
) -> None:
    """Beyond one TPM buffer (the CFB trick's chunking), both ways, both modes, both kinds."""
    data = os.urandom(16 * 70)
    for kind in ("load", "use+pin"):
        mid = mids[kind]
        expected = SoftwareAes(mid.k).encrypt_blocks(data)
        record = registry.read().get(mid.record.mid)
        for mode in ("ecb", "cfb"):
            for protect in (True, False):
                with LoadedMid(
                    conn, record, pin=mid.pin, mode=mode, bus_protection=protect
                ) as loaded:
                    assert loaded.bus_protection is protect
                    assert isinstance(loaded.holder, TpmBlockCipher)
                    assert loaded.holder.bus_protected is protect
                    assert loaded.holder.encrypt_blocks(data) == expected, (kind, mode, protect)
                    assert f"bus_protection={protect}" in repr(loaded)


def test_encrypt_decrypt_v1_cannot_be_protected(
    conn: TpmConnection, registry: Registry, mids: dict[str, LocalMid]
) -> None:
    """TPM2_EncryptDecrypt puts ``decrypt`` before inData: parameter encryption cannot hide
    the input, so a TPM with only v1 refuses bus protection; the opt-out runs it (swtpm has
    both commands, so v1 really runs here)."""
    mid = mids["load"]
    record = registry.read().get(mid.record.mid)
    v1_only = SymmetricSupport(encrypt_decrypt2=False, encrypt_decrypt=True, ecb=True, cfb=True)
    with pytest.raises(Unavailable, match="EncryptDecrypt2") as info:
        LoadedMid(conn, record, symmetric=v1_only)
    assert "--no-bus-protection" in (info.value.fix or "")
    with LoadedMid(conn, record, symmetric=v1_only, bus_protection=False) as loaded:
        block = os.urandom(16)
        assert loaded.holder.encrypt_blocks(block) == SoftwareAes(mid.k).encrypt_blocks(block)
    with pytest.raises(BadInput):
        TpmBlockCipher(conn, None, command="EncryptDecrypt", bus_protected=True)


def test_sealed_k_is_always_unsealed_over_the_protected_session(
    lab: LabStatus, conn: TpmConnection, registry: Registry
) -> None:
    from tpm.mid import import_package, wrap_for_device
    from tpm.package import AlgorithmSpec, MidSecrets

    k, opc = os.urandom(16), os.urandom(16)
    package = wrap_for_device(
        conn,
        MidSecrets(k, opc),
        imsi="001019990000104",
        algorithm=AlgorithmSpec(),
        amf=b"\x80\x00",
        sqn_ms=bytes(6),
        kind="load",
        form="sealed",
    )
    record = import_package(conn, registry, package, activate=True)
    mid = LocalMid(record, k, opc)
    for protect in (True, False):  # the opt-out does not apply: K itself would cross
        _, outcome, capture, _ = _tapped_aka(lab, registry, mid, bus_protection=protect)
        result = outcome.result
        assert isinstance(result, AkaSuccess)
        assert outcome.mode == "sealed" and outcome.bus_protection is True
        for secret in (k, opc, result.res, result.ck, result.ik):
            assert secret not in capture
