"""The agent's edge helpers that need no TPM: the crash hook, the TPM command observer, the agent file,
the pinned trust file, the grant routing, the HSS record parser of ``operator add-subscriber``."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from host.agent import AgentState, MidInfo, Send
from host.cli.operator_cmd import parse_hss_record
from host.provision import (
    CRASH_ENV,
    AgentFiles,
    _agent_text,
    chain,
    crash_hook,
    load_trust,
    post,
)
from network.config import device_trust
from tests.unit.network.conftest import make_config
from tpm.registry import Registry
from tpm.tss import Transport
from trelab.errors import BadInput, Unavailable


def test_crash_hook_fires_once_at_the_nth_time_and_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CRASH_ENV, raising=False)
    assert crash_hook() is None
    kills: list[str] = []
    hook = crash_hook("after:dpf/receipt#2", kill=lambda: kills.append("kill"))
    assert hook is not None
    for point in ("before:dpf/receipt", "after:dpf/receipt", "after-import", "after:dpf/receipt"):
        hook(point)
    assert kills == ["kill"]
    hook("after:dpf/receipt")
    assert kills == ["kill"]
    monkeypatch.setenv(CRASH_ENV, "before-import")
    seen: list[str] = []
    env_hook = crash_hook(kill=lambda: seen.append("x"))
    assert env_hook is not None
    chain(None, env_hook, seen.append)("before-import")
    assert seen == ["x", "before-import"]


class _CannedTransport(Transport):
    """A transport answering every command with TPM_RC_SUCCESS (or a set code), no TPM: only
    the observer plumbing is under test here; tests/integration runs it on swtpm."""

    def __init__(self) -> None:
        super().__init__()
        self.rc = 0

    def _exchange(self, command: bytes) -> bytes:
        return struct.pack(">HII", 0x8001, 10, self.rc)


def _command(code: int) -> bytes:
    return struct.pack(">HII", 0x8001, 10, code)


def test_instrumented_times_tpm_commands_and_hooks_them_by_step() -> None:
    from host.provision import instrumented

    transport, points = _CannedTransport(), []
    conn: Any = SimpleNamespace(transport=transport)
    with instrumented(conn, points.append) as clock:
        transport.execute(_command(0x134))  # NV_Increment, outside a step: timed, no hook
        with clock.step("import"):
            transport.execute(_command(0x134))
            transport.execute(_command(0x156))  # Import
            transport.rc = 0x98E
            transport.execute(_command(0x137))  # NV_Write, refused: still a TPM command
    transport.execute(_command(0x134))  # after the block: not observed
    assert clock.calls == 4 and clock.seconds > 0
    assert {k: v[0] for k, v in clock.by_command.items()} == {
        "nv_increment": 2,
        "import_": 1,
        "nv_write": 1,
    }
    assert points == ["import/tpm:nv_increment", "import/tpm:import_", "import/tpm:nv_write"]
    assert clock.label == ""
    assert transport.commands == 5


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    | st.binary(min_size=32).map(bytes.hex)
    | st.sampled_from(["ab" * 40 + "\n", "ab cd" * 20, "AB" * 40, "\t" + "0a" * 40]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), _JSON, max_size=4),
    st.lists(st.dictionaries(st.text(max_size=8), _JSON, max_size=3), max_size=3),
)
def test_agent_text_is_the_json_of_the_document(doc: dict[str, Any], mids: list[Any]) -> None:
    doc = {**doc, "mids": mids}
    assert json.loads(_agent_text(doc)) == doc


def test_agent_file_reads_the_disk_outside_its_lock_and_its_own_state_inside(
    tmp_path: Path,
) -> None:
    files = AgentFiles(Registry(tmp_path / "mids.json"))
    first = AgentState(mids={"m": MidInfo("m", "sho-a", "00101", 1, 2, "u", "ACTIVE")})
    other = AgentState(journal={"kind": "provision", "wire": "ab" * 100})
    with files.locked():
        files.write(first)
        assert files.read() is first
    AgentFiles(files.registry).write(other)  # another writer, while the lock is free
    assert files.read() == other
    with files.locked():
        assert files.read() == other
    assert json.loads(files.path.read_text())["journal"] == {
        "kind": "provision",
        "wire": "ab" * 100,
    }


def test_agent_file_round_trips_atomically_with_mode_0600(tmp_path: Path) -> None:
    files = AgentFiles(Registry(tmp_path / "mids.json"))
    assert files.path.name == "mids.agent.json"
    assert files.read() == AgentState()
    state = AgentState(mids={"m": MidInfo("m", "sho-a", "00101", 1, 2, "u", "ACTIVE")})
    with files.locked():
        files.write(state)
    assert files.read() == state
    assert files.path.stat().st_mode & 0o777 == 0o600
    files.path.write_text("{not json")
    with pytest.raises(BadInput, match="not JSON"):
        files.read()


def test_pinned_trust_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Unavailable, match="no pinned device trust"):
        load_trust(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("[1")
    with pytest.raises(BadInput):
        load_trust(bad)
    good = tmp_path / "device-trust.json"
    good.write_text(json.dumps(device_trust(make_config())))
    assert set(load_trust(good).shos) == {"sho-a", "sho-b"}


class _Recorder:
    def __init__(self) -> None:
        self.grants: dict[str, bytes | None] = {}

    def post(self, endpoint: str, wire: bytes, *, grant: bytes | None = None) -> bytes:
        self.grants[endpoint] = grant
        return b""


def test_an_icf_grant_goes_only_to_the_registration_operator() -> None:
    recorder = _Recorder()
    for endpoint in ("drf/register", "pva/evidence", "dpf/receipt", "sho/attach", "sho/lifecycle"):
        post(recorder, Send(endpoint, b""), b"grant")
    assert recorder.grants == {
        "drf/register": b"grant",
        "pva/evidence": b"grant",
        "dpf/receipt": b"grant",
        "sho/attach": None,
        "sho/lifecycle": None,
    }


def test_hss_record_parser_takes_the_card_vendors_file_and_names_bad_fields() -> None:
    from firmware_stubs.usim.personalise import hss_record
    from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile

    doc = hss_record(parse_profile(DEFAULT_PROFILE)).to_json()
    fields = parse_hss_record(doc)
    assert fields["imsi"] == "001010123456789" and len(fields["k"]) == 16
    assert fields["sqn"]["seq_he"] > 0 and fields["params"] == {}
    tuak = {**doc, "algorithm": "tuak", "k": "00" * 32, "topc": "11" * 32, "iterations": 1,
            "res_bits": 64, "mac_bits": 64, "ck_bits": 128, "ik_bits": 128}  # fmt: skip
    assert parse_hss_record(tuak)["params"]["key_bits"] == 256
    for broken, field in (
        ({**doc, "imsi": "12"}, "imsi"),
        ({**doc, "k": "zz"}, "k"),
        ({**doc, "opc": "00"}, "opc"),
        ({**doc, "algorithm": "comp128"}, "algorithm"),
        ({**tuak, "iterations": "1"}, "iterations"),
    ):
        with pytest.raises(BadInput, match=field):
            parse_hss_record(broken)
