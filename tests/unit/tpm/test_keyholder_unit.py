"""tpm.keyholder without a TPM: the sealed holders (K handed over by a callback, as the TPM's
Unseal would) against the 3GPP sets, the wiping, and the mode choice of the probe result.
TpmBlockCipher (ECB and the CFB trick) runs against swtpm in tests/integration/test_tpm_mid.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aka.milenage import Milenage
from aka.tuak import Tuak
from tpm.keyholder import SealedAes, SealedKeccak, SymmetricSupport
from trelab.errors import BadInput

DATA = Path(__file__).resolve().parents[3] / "aka" / "data"
MILENAGE = json.loads((DATA / "milenage_35208.json").read_text())["milenage"]
TUAK = json.loads((DATA / "tuak_35233.json").read_text())["tuak"]


class Vault:
    """Plays the TPM's Unseal: hands out a fresh bytearray and keeps every one it gave."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.given: list[bytearray] = []

    def __call__(self) -> bytearray:
        out = bytearray(self.key)
        self.given.append(out)
        return out


@pytest.mark.parametrize("vector", MILENAGE[:6], ids=lambda v: v["name"][-12:])
def test_sealed_aes_milenage(vector: dict[str, str]) -> None:
    vault = Vault(bytes.fromhex(vector["K"]))
    holder = SealedAes(vault)
    m = Milenage(holder, bytes.fromhex(vector["OPc"]))
    rand, sqn, amf = (bytes.fromhex(vector[k]) for k in ("RAND", "SQN", "AMF"))
    with holder.unsealed():
        out = m.all_outputs(rand, sqn, amf)
    assert out["f1"].hex() == vector["f1"] and out["f3"].hex() == vector["f3_ck"]
    assert out["f5star"].hex() == vector["f5_star_ak"]
    assert vault.given and all(b == bytearray(16) for b in vault.given)  # wiped
    assert len(vault.given) == 1  # one unseal for the whole AKA


@pytest.mark.parametrize("vector", TUAK, ids=lambda v: v["name"][-10:])
def test_sealed_keccak_tuak(vector: dict[str, object]) -> None:
    lengths = vector["lengths_bits"]
    assert isinstance(lengths, dict)
    k = bytes.fromhex(str(vector["K"]))
    vault = Vault(k)
    holder = SealedKeccak(vault, 8 * len(k))
    tuak = Tuak(
        holder,
        bytes.fromhex(str(vector["TOPc"])),
        mac_bits=lengths["MAC"],
        res_bits=lengths["RES"],
        ck_bits=lengths["CK"],
        ik_bits=lengths["IK"],
        iterations=int(str(vector["keccak_iterations"])),
    )
    rand, sqn, amf = (bytes.fromhex(str(vector[x])) for x in ("RAND", "SQN", "AMF"))
    f = tuak.f2345(rand)  # outside unsealed(): one unseal per permutation
    assert f.res.hex() == vector["f2_res"] and f.ak.hex() == vector["f5_ak"]
    assert tuak.f1(rand, sqn, amf).hex() == vector["f1"]
    assert all(b == bytearray(len(k)) for b in vault.given)
    assert "sealed" in repr(holder) and k.hex() not in repr(holder)


def test_sealed_holders_refuse_bad_input() -> None:
    with pytest.raises(BadInput):
        SealedAes(Vault(bytes(16))).encrypt_blocks(b"short")
    with pytest.raises(BadInput):
        SealedAes(Vault(bytes(15))).encrypt_blocks(bytes(16))
    with pytest.raises(BadInput):
        SealedKeccak(Vault(bytes(16)), 192)


@pytest.mark.parametrize(
    ("support", "mode", "command"),
    [
        (SymmetricSupport(True, True, True, True), "ecb", "EncryptDecrypt2"),
        (SymmetricSupport(True, False, False, True), "cfb", "EncryptDecrypt2"),
        (SymmetricSupport(False, True, True, True), "ecb", "EncryptDecrypt"),
        (SymmetricSupport(False, False, True, True), "sealed", None),
        (SymmetricSupport(True, True, False, False), "sealed", "EncryptDecrypt2"),
    ],
)
def test_mode_follows_the_probe(support: SymmetricSupport, mode: str, command: str | None) -> None:
    assert support.default_mode == mode
    assert support.command == command
