"""What the lab puts in front of its swtpm: real-part profiles (the TPM proxy) and tpm2-abrmd.

Profiles: one proxy process per part in front of the session lab's swtpm; on each part
tpm2-tools (an independent client) sees the part's identity and lists, ESYS gets the part's
refusals (TPM_RC_COMMAND_CODE, unmarshalling errors, errata), ``trelab tpm info`` names the
AKA mode and what it guarantees, and a MID provisioned with trelab's defaults runs AKA in
that mode. tpm2-abrmd: a lab of its own with ``resource_manager="abrmd"``: per-connection
handles, context swapping past the TPM's three object slots, refusal of another
connection's handle, clean stop.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aka.autn import build_autn
from aka.hmac_aka import HmacAka, SoftwareHmac
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import join_sqn
from aka.usim import AkaSuccess
from firmware_stubs.tpm_proxy import profiles
from firmware_stubs.tpm_proxy.wire import RC_COMMAND_CODE, RC_FAILURE
from lab import swtpm
from lab.lab import Lab, LabStatus
from threats.tpm_tools import fresh_autn
from tpm.aka import authenticate
from tpm.connection import TpmConnection
from tpm.info import probe
from tpm.mid import delete_mid, import_package, wrap_for_device
from tpm.package import AlgorithmSpec, MidSecrets
from tpm.registry import Registry
from trelab import proc

pytestmark = pytest.mark.lab
os.environ.setdefault("TSS2_LOG", "all+none")
REPO = Path(__file__).resolve().parents[2]
PARTS = profiles.names()
#: The mode Milenage runs in on each part with trelab's defaults (bus-protected: K inside only
#: through TPM2_EncryptDecrypt2), and what ``tpm info`` proposes there.
EXPECTED_MODE = {
    "slb9670": "sealed",
    "slb9672": "sealed",
    "st33": "sealed",
    "intel-ptt": "sealed",  # TPM2_EncryptDecrypt only: cannot carry an encrypted inData
    "npct75x": "ecb",
    "amd-ftpm": "ecb",
}
PROPOSED = {name: "hmac" if mode == "sealed" else mode for name, mode in EXPECTED_MODE.items()}
HMAC_SET = AlgorithmSpec(name="hmac-sha256", key_bits=256, res_bits=64)


class Proxy:
    """``python -m firmware_stubs.tpm_proxy`` for one part, in front of the swtpm on ``up``."""

    def __init__(self, profile: str, upstream: int, log: Path) -> None:
        self.profile = profiles.load(profile)
        self.port = swtpm.find_free_port_pair()
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        argv = [sys.executable, "-m", "firmware_stubs.tpm_proxy", "--profile", profile]
        argv += ["--port", str(self.port), "--swtpm-port", str(upstream)]
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL, env=env
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().decode()
        if not first.startswith("tpm proxy on"):
            self.stop()
            raise AssertionError(f"proxy printed {first!r}; see {log}")
        self.tcti = swtpm.tcti(self.port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


@pytest.fixture(scope="module")
def proxies(lab: LabStatus, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start proxies on demand, one per part, all stopped at the end of the module."""
    made: dict[str, Proxy] = {}
    logs = tmp_path_factory.mktemp("proxy-logs")
    assert lab.swtpm.port is not None

    def get(name: str, *, fresh: bool = False) -> Proxy:
        if fresh or name not in made:
            if name in made:
                made.pop(name).stop()
            made[name] = Proxy(name, lab.swtpm.port or 0, logs / f"{name}.log")
        return made[name]

    try:
        yield get
    finally:
        for proxy in made.values():
            proxy.stop()


def getcap(tcti: str, what: str) -> str:
    run = subprocess.run(
        ["tpm2_getcap", "-T", tcti, what], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def raw_value(dump: str, prop: str) -> int:
    match = re.search(rf"^{prop}:\n  raw: (0x[0-9A-Fa-f]+|\d+)", dump, re.M)
    assert match, f"{prop} missing"
    return int(match.group(1), 0)


def rc_of(exc: BaseException) -> int:
    return int(getattr(exc, "rc", -1))


# ---- profiles: identity, lists, refusals, AKA ---------------------------------------------------


@pytest.mark.parametrize("name", PARTS)
def test_tpm2_tools_sees_the_part(proxies: Callable[..., Proxy], name: str) -> None:
    proxy = proxies(name)
    part = proxy.profile
    fixed = getcap(proxy.tcti, "properties-fixed")
    for prop in ("MANUFACTURER", "VENDOR_STRING_1", "VENDOR_STRING_2", "FIRMWARE_VERSION_1"):
        if prop in part.fixed:
            assert raw_value(fixed, f"TPM2_PT_{prop}") == part.fixed[prop], prop
    commands = getcap(proxy.tcti, "commands")
    entries = re.findall(r"^(\S+):$", commands, re.M)  # names, or hex for ones it cannot name
    listed = [e.removeprefix("TPM2_CC_") for e in entries]
    assert "GetCapability" in listed and "StartAuthSession" in listed
    assert not set(part.absent_commands) & set(listed)
    assert raw_value(fixed, "TPM2_PT_TOTAL_COMMANDS") == len(entries)
    algorithms = re.findall(r"^(\w+):\n  value:", getcap(proxy.tcti, "algorithms"), re.M)
    assert "sha256" in algorithms and "aes" in algorithms and "cfb" in algorithms
    assert not set(part.absent_algorithms) & set(algorithms)


@pytest.mark.parametrize("name", PARTS)
def test_tpm_info_names_the_mode_and_its_guarantee(
    proxies: Callable[..., Proxy], name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from host.cli import main

    proxy = proxies(name)
    with TpmConnection(proxy.tcti) as conn:
        info = probe(conn)
    assert info.encrypt_decrypt2 is ("EncryptDecrypt2" not in proxy.profile.absent_commands)
    assert info.encrypt_decrypt is ("EncryptDecrypt" not in proxy.profile.absent_commands)
    assert info.aes_modes["ecb"] is ("ecb" not in proxy.profile.absent_algorithms)
    assert info.aka_mode == EXPECTED_MODE[name]
    assert main(["tpm", "info", "--tpm", proxy.tcti, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["aka_mode"] == EXPECTED_MODE[name]
    assert data["aka_proposal"]["mode"] == PROPOSED[name] and data["aka_proposal"]["k_inside"]
    if PROPOSED[name] == "hmac":
        assert data["aka_mode_guarantee"].startswith("K stays inside the TPM as an HMAC key")
    else:
        assert "K stays inside the TPM (TPM2_EncryptDecrypt2" in data["aka_mode_guarantee"]


@pytest.mark.parametrize("name", PARTS)
def test_what_the_part_lacks_is_refused_as_the_part_does(
    proxies: Callable[..., Proxy], name: str
) -> None:
    from tpm2_pytss import TPM2B_PUBLIC, TPMT_PUBLIC_PARMS, TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG

    proxy = proxies(name)
    part = proxy.profile
    silent = any(e.command == "EncryptDecrypt2" for e in part.errata)
    with TpmConnection(proxy.tcti) as conn:
        esys = conn.esys
        template = TPM2B_PUBLIC.parse("aes128cfb")
        key, _, _, _, _ = esys.create_primary(None, template, primary_handle=ESYS_TR.OWNER)
        handle = int(esys.tr_get_tpm_handle(key))
        block = os.urandom(16)
        if "EncryptDecrypt2" in part.absent_commands:
            with pytest.raises(TSS2_Exception) as refused:
                esys.encrypt_decrypt_2(key, False, TPM2_ALG.CFB, bytes(16), block)
            if silent:
                assert rc_of(refused.value) >> 16 == 0xA  # TCTI layer: no answer came
            else:
                assert rc_of(refused.value) & 0xFFF == RC_COMMAND_CODE
        else:
            out, _ = esys.encrypt_decrypt_2(key, False, TPM2_ALG.CFB, bytes(16), block)
            assert len(bytes(out)) == 16
    # After a transport error ESYS refuses further calls: flush from a fresh connection.
    with TpmConnection(proxy.tcti) as conn:
        esys = conn.esys
        conn.flush(esys.tr_from_tpmpublic(handle))
        if "ecb" in part.absent_algorithms:
            parms = TPMT_PUBLIC_PARMS(type=TPM2_ALG.SYMCIPHER)
            parms.parameters.symDetail.sym.algorithm = TPM2_ALG.AES
            parms.parameters.symDetail.sym.keyBits.aes = 128
            parms.parameters.symDetail.sym.mode.aes = TPM2_ALG.ECB
            with pytest.raises(TSS2_Exception) as refused:
                esys.test_parms(parms)
            assert rc_of(refused.value) & 0xFFF == 0x1C9  # TPM_RC_MODE, parameter 1
        assert esys.get_random(8)  # the part still answers after its refusals
        assert handle not in transient(conn)


@pytest.mark.parametrize("name", PARTS)
def test_a_mid_runs_aka_in_the_parts_mode(
    proxies: Callable[..., Proxy], lab: LabStatus, name: str
) -> None:
    proxy = proxies(name)
    registry = Registry(lab.lab_dir / "mids.json")  # one registry per TPM: the lab's
    k, opc = os.urandom(16), os.urandom(16)
    with TpmConnection(proxy.tcti) as conn:
        package = wrap_for_device(
            conn, MidSecrets(k, opc, None), imsi="001010123456789", algorithm=AlgorithmSpec(),
            amf=b"\x80\x00", sqn_ms=bytes(6), kind="load", selection="sha256:0,1,2,3",
        )  # fmt: skip
        record = import_package(conn, registry, package, activate=True)
        try:
            rand = os.urandom(16)
            outcome = authenticate(conn, registry, record.mid, rand, fresh_autn(k, opc, rand, 1))
            assert outcome.mode == EXPECTED_MODE[name] and outcome.bus_protection
            assert isinstance(outcome.result, AkaSuccess)
            _, expected = Milenage(SoftwareAes(k), opc).f1_f2345(rand, join_sqn(1, 0), b"\x80\x00")
            assert outcome.result.res == expected.res and outcome.result.ck == expected.ck
        finally:
            delete_mid(conn, registry, record.mid)


@pytest.mark.parametrize("name", PARTS)
def test_the_hmac_set_keeps_k_inside_on_every_part(
    proxies: Callable[..., Proxy], lab: LabStatus, name: str
) -> None:
    proxy = proxies(name)
    registry = Registry(lab.lab_dir / "mids.json")
    k, opc = os.urandom(32), os.urandom(32)
    with TpmConnection(proxy.tcti) as conn:
        package = wrap_for_device(
            conn, MidSecrets(k, opc, None), imsi="001010123456780", algorithm=HMAC_SET,
            amf=b"\x80\x00", sqn_ms=bytes(6), kind="load", selection="sha256:0,1,2,3",
        )  # fmt: skip
        record = import_package(conn, registry, package, activate=True)
        try:
            rand, sqn, amf = os.urandom(16), join_sqn(1, 0), b"\x80\x00"
            network = HmacAka(SoftwareHmac(k), opc, res_bits=HMAC_SET.res_bits)
            mac, expected = network.f1_f2345(rand, sqn, amf)
            autn = build_autn(sqn, expected.ak, amf, mac)
            outcome = authenticate(conn, registry, record.mid, rand, autn)
            assert outcome.mode == "hmac" and outcome.bus_protection
            assert isinstance(outcome.result, AkaSuccess)
            assert (outcome.result.res, outcome.result.ck) == (expected.res, expected.ck)
        finally:
            delete_mid(conn, registry, record.mid)


def test_slb9670_policysecret_in_an_hmac_session_is_failure_mode(
    proxies: Callable[..., Proxy], lab: LabStatus
) -> None:
    from tpm2_pytss import TPMT_SYM_DEF, TSS2_Exception
    from tpm2_pytss.constants import ESYS_TR, TPM2_ALG, TPM2_SE

    proxy = proxies("slb9670", fresh=True)
    handles: list[int] = []
    with TpmConnection(proxy.tcti) as conn:
        esys = conn.esys
        null = TPMT_SYM_DEF(algorithm=TPM2_ALG.NULL)
        hmac = esys.start_auth_session(
            ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.HMAC, null, TPM2_ALG.SHA256
        )
        policy = esys.start_auth_session(
            ESYS_TR.NONE, ESYS_TR.NONE, TPM2_SE.POLICY, null, TPM2_ALG.SHA256
        )
        handles = [int(esys.tr_get_tpm_handle(s)) for s in (hmac, policy)]
        with pytest.raises(TSS2_Exception) as failed:
            esys.policy_secret(ESYS_TR.ENDORSEMENT, policy, session1=hmac)
        assert rc_of(failed.value) & 0xFFF == RC_FAILURE
        with pytest.raises(TSS2_Exception) as still:
            esys.get_random(8)
        assert rc_of(still.value) & 0xFFF == RC_FAILURE  # every command until a power cycle
        assert probe(conn).manufacturer == "IFX"  # GetCapability still answers
    # The sessions are still in swtpm (the proxy refused to flush them): flush directly.
    with TpmConnection(lab.swtpm.tcti or "") as direct:
        for handle in handles:
            direct.flush(direct.esys.tr_from_tpmpublic(handle))
    fresh = proxies("slb9670", fresh=True)  # the part's power cycle
    with TpmConnection(fresh.tcti) as conn:
        assert len(bytes(conn.esys.get_random(8))) == 8


# ---- tpm2-abrmd in front ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rm_lab(lab_factory: Callable[..., Lab]) -> Iterator[tuple[Lab, LabStatus]]:
    instance = lab_factory("abrmd-lab", resource_manager="abrmd")
    status = instance.up()
    yield instance, status
    instance.down()


def transient(conn: TpmConnection) -> list[int]:
    from tpm2_pytss.constants import TPM2_CAP

    _, caps = conn.esys.get_capability(TPM2_CAP.HANDLES, 0x80000000, 64)
    return [int(h) for h in caps.data.handles]


def primary(conn: TpmConnection) -> Any:
    from tpm2_pytss import TPM2B_PUBLIC
    from tpm2_pytss.constants import ESYS_TR

    template = TPM2B_PUBLIC.parse("ecc256")
    return conn.esys.create_primary(None, template, primary_handle=ESYS_TR.OWNER)[0]


def test_lab_runs_abrmd_and_says_so(rm_lab: tuple[Lab, LabStatus], capsys: Any) -> None:
    from host.cli import main

    instance, status = rm_lab
    assert status.tcti.startswith("tabrmd:bus_name=com.intel.tss2.Tabrmd.trelab_")
    assert main(["lab", "status", "--lab-dir", str(instance.path), "--json"]) == 0
    front = json.loads(capsys.readouterr().out)["components"]["tpm_front"]
    assert front["resource_manager"] == "abrmd" and front["state"] == "running"
    assert proc.is_alive(front["abrmd"]["pid"])


def test_abrmd_gives_each_connection_its_own_handles(rm_lab: tuple[Lab, LabStatus]) -> None:
    from tpm2_pytss import TSS2_Exception

    _, status = rm_lab
    with TpmConnection(status.tcti) as a, TpmConnection(status.tcti) as b:
        key = primary(a)
        mine = transient(a)
        assert len(mine) == 1 and transient(b) == []  # B does not see A's object
        with pytest.raises(TSS2_Exception):
            b.esys.tr_from_tpmpublic(mine[0])  # nor can it name it
        with TpmConnection(status.swtpm.tcti or "") as direct:
            assert transient(direct) == []  # swapped out of the TPM between commands
        a.flush(key)
    with TpmConnection(status.tcti) as a:
        for _ in range(5):  # more objects than swtpm's 3 slots, never flushed by us …
            primary(a)
        assert len(transient(a)) == 5  # … the broker swaps contexts in and out
    with TpmConnection(status.swtpm.tcti or "") as direct:
        assert transient(direct) == []  # and flushed them when the connection closed


def test_without_abrmd_the_fourth_object_does_not_fit(lab: LabStatus) -> None:
    from tpm2_pytss import TSS2_Exception

    with TpmConnection(lab.swtpm.tcti or "") as direct:
        loaded = []
        try:
            with pytest.raises(TSS2_Exception) as full:
                for _ in range(5):
                    loaded.append(primary(direct))
            assert rc_of(full.value) & 0xFFF == 0x902  # TPM_RC_OBJECT_MEMORY
            assert len(loaded) == 3
        finally:
            for handle in loaded:
                direct.flush(handle)


def test_profile_and_abrmd_chain_and_lab_down_stops_both(
    lab_factory: Callable[..., Lab],
) -> None:
    instance = lab_factory("chain", tpm_profile="slb9670", resource_manager="abrmd")
    status = instance.up()
    assert status.front is not None and status.front.profile == "slb9670"
    with TpmConnection(status.tcti) as conn:
        info = probe(conn)
    assert (info.manufacturer, info.vendor, info.aka_mode) == ("IFX", "SLB9670", "sealed")
    # the profile goes, the resource manager stays (restarted: it fronted the proxy)
    changed = Lab(instance.path, tpm_profile="none").up()
    assert changed.front is not None and changed.front.profile is None
    assert changed.front.resource_manager == "abrmd" and changed.tcti.startswith("tabrmd:")
    pid = changed.front.abrmd_pid
    down = instance.down()
    assert down.front is not None and down.front.state == "stopped"
    assert pid is not None and not proc.is_alive(pid)
