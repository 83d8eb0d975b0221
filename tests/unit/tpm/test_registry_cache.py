"""The MID registry's parse cache: what a read returns is always what the file holds now.

The registry keeps, per file, the text it last read or wrote and its parse, and re-parses
only the MID lines that differ. These tests change the file behind its back (another process,
a hand edit, a restored copy) and check that every read sees the change, and that the line
parse and the whole-document parse agree."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from aka.sqn import SqnState
from tpm import registry as registry_module
from tpm.mid_errors import UnknownMid
from tpm.package import AlgorithmSpec, MidPolicy
from tpm.registry import MidRecord, Registry, RegistryData, StoredObject
from trelab.errors import BadInput


def _record(n: int, seq: int = 0) -> MidRecord:
    state = SqnState()
    if seq:
        state = SqnState(tuple([seq] + [0] * (len(state.seq_ms) - 1)))
    return MidRecord(
        mid=f"mid-{n}",
        imsi=f"00101{n:010d}",
        slot=n,
        seq=n + 1,
        algorithm=AlgorithmSpec(),
        amf=b"\x80\x00",
        policy=MidPolicy(kind="load", selection="sha256:0,1,2", pcr_digest=bytes(32), slot=n),
        parent=StoredObject(bytes([n]) * 90, bytes([n + 1]) * 120),
        k=StoredObject(b"\x01" * 60, b"\x02" * 100),
        secret=StoredObject(b"\x03" * 60, b"\x04" * 100),
        sqn=state,
        state="active",
        created="2026-01-01T00:00:00+00:00",
    )


def _data(*records: MidRecord, version: int = 3) -> RegistryData:
    return RegistryData(
        version=version,
        ek_name=b"\x00\x0b" + bytes(32),
        mids={r.mid: r for r in records},
        audit=("imported mid-0", 'a "quoted" event, with a comma'),
    )


def _forget() -> None:
    registry_module._PARSED.clear()


def test_what_is_written_reads_back_the_same_line_by_line_and_whole(tmp_path: Path) -> None:
    path = tmp_path / "mids.json"
    data = _data(_record(0), _record(1, seq=7), _record(2))
    Registry(path).write_unchecked(data)
    _forget()
    assert Registry(path).read() == data  # a fresh process: line by line
    whole = RegistryData.from_json(json.loads(path.read_text()))
    assert whole == data
    assert Registry(path).read() == data  # from the cache


def test_a_registry_without_mids_or_events_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "mids.json"
    empty = RegistryData(version=1, ek_name=b"\x01", mids={}, audit=())
    Registry(path).write_unchecked(empty)
    _forget()
    assert Registry(path).read() == empty


def test_a_change_by_another_process_is_read_at_once(tmp_path: Path) -> None:
    """Another process moves one MID's SQN and deletes another; this process's next read
    (same Registry object, its parse cached) sees both."""
    path = tmp_path / "mids.json"
    registry = Registry(path)
    registry.write_unchecked(_data(_record(0), _record(1), _record(2)))
    assert registry.read().get("mid-1").sqn.highest_seq == 0
    script = (
        "import sys\n"
        "from dataclasses import replace\n"
        "from aka.sqn import SqnState\n"
        "from tpm.registry import Registry\n"
        "r = Registry(sys.argv[1])\n"
        "d = r.read()\n"
        "one = d.get('mid-1')\n"
        "moved = SqnState(tuple([9] + [0] * (len(one.sqn.seq_ms) - 1)))\n"
        "d = d.with_mid(replace(one, sqn=moved)).without_mid('mid-2')\n"
        "r.write_unchecked(replace(d, version=d.version + 1))\n"
    )
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
    seen = registry.read()
    assert seen.version == 4
    assert seen.get("mid-1").sqn.highest_seq == 9
    with pytest.raises(UnknownMid):
        seen.get("mid-2")
    assert seen.get("mid-0") == _record(0)
    _forget()
    assert Registry(path).read() == seen


def test_a_restored_older_copy_is_read_as_it_is(tmp_path: Path) -> None:
    """Putting back an older file (what the REG_CTR check then refuses) is never masked by
    the newer parse this process remembers."""
    path = tmp_path / "mids.json"
    registry = Registry(path)
    registry.write_unchecked(_data(_record(0), version=5))
    old_text = path.read_text()
    registry.write_unchecked(_data(_record(0, seq=4), version=6))
    assert registry.read().version == 6
    path.write_text(old_text)
    again = registry.read()
    assert again.version == 5 and again.get("mid-0").sqn.highest_seq == 0


def test_two_registry_objects_on_one_file_see_each_others_writes(tmp_path: Path) -> None:
    path = tmp_path / "mids.json"
    first, second = Registry(path), Registry(path)
    first.write_unchecked(_data(_record(0), _record(1)))
    assert second.read().get("mid-1").sqn.highest_seq == 0
    data = second.read()
    second.write_unchecked(data.with_mid(replace(data.get("mid-1"), sqn=_record(1, 3).sqn)))
    assert first.read().get("mid-1").sqn.highest_seq == 3


def test_a_file_in_another_layout_is_parsed_whole(tmp_path: Path) -> None:
    """A hand-formatted registry (any JSON layout) reads the same as trelab's own layout."""
    path = tmp_path / "mids.json"
    data = _data(_record(0), _record(1))
    path.write_text(json.dumps(data.to_json(), indent=2))
    _forget()
    assert Registry(path).read() == data
    path.write_text(json.dumps(data.to_json()))
    assert Registry(path).read() == data


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace('"mid": "mid-1"', '"mid": "mid-1', 1),  # broken JSON line
        lambda text: text.replace('"slot": 1,', '"slot": "one",', 1),  # a bad field
        lambda text: text.replace('"trelab.mid-registry"', '"other"', 1),  # wrong format
        lambda text: text.replace("},\n", "}\n", 1),  # a comma lost between two MIDs
        lambda text: text[: len(text) // 2],  # truncated
    ],
)
def test_a_damaged_file_is_refused_even_with_its_parse_cached(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "mids.json"
    registry = Registry(path)
    registry.write_unchecked(_data(_record(0), _record(1), _record(2)))
    registry.read()
    path.write_text(damage(path.read_text()))
    with pytest.raises(BadInput):
        registry.read()


def test_a_commit_encodes_only_the_record_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An AKA changes one MID's SQN: the write re-encodes that record's SQN state only (a
    change to any other field re-encodes the record), and the next read re-parses nothing
    (the file is the text just written)."""
    path = tmp_path / "mids.json"
    registry = Registry(path)
    registry.write_unchecked(_data(*(_record(n) for n in range(6))))
    data = registry.read()
    encoded: list[str] = []
    parsed: list[object] = []
    original_to_json, original_from_json = MidRecord.to_json, MidRecord.from_json.__func__  # type: ignore[attr-defined]

    def counting_to_json(self: MidRecord) -> dict[str, object]:
        encoded.append(self.mid)
        return original_to_json(self)

    def counting_from_json(cls: type[MidRecord], doc: object) -> MidRecord:
        parsed.append(doc)
        return original_from_json(cls, doc)  # type: ignore[no-any-return]

    monkeypatch.setattr(MidRecord, "to_json", counting_to_json)
    monkeypatch.setattr(MidRecord, "from_json", classmethod(counting_from_json))
    moved = data.with_mid(replace(data.get("mid-3"), sqn=_record(3, 5).sqn))
    registry.write_unchecked(moved)
    assert encoded == []
    assert registry.read() == moved and parsed == []
    renamed = moved.with_mid(replace(moved.get("mid-2"), state="suspended"))
    registry.write_unchecked(renamed)
    assert encoded == ["mid-2"]
    assert registry.read() == renamed and parsed == []
    # another process rewrote one line: only that line is parsed again
    text = path.read_text()
    path.write_text(text.replace('"imsi": "001010000000004"', '"imsi": "001010000000044"'))
    assert registry.read().get("mid-4").imsi == "001010000000044"
    assert len(parsed) == 1


def test_an_sqn_commit_writes_what_encoding_everything_again_writes(tmp_path: Path) -> None:
    """A commit that moves one MID's SQN state reuses that MID's line around the new state
    and the audit events' lines: the file is byte for byte what encoding the whole registry
    afresh gives, commit after commit (an event added in between included)."""
    path = tmp_path / "mids.json"
    registry = Registry(path)
    registry.write_unchecked(_data(_record(0), _record(1), _record(2)))
    for seq in range(1, 6):
        data = registry.read()
        one = data.get("mid-1")
        data = data.with_mid(replace(one, sqn=_record(1, seq=seq).sqn))
        if seq == 3:
            data = data.with_event(f"an event after commit {seq}")
        registry.write_unchecked(replace(data, version=data.version + 1))
        written = path.read_text()
        _forget()
        registry_module._render(data, None)  # nothing remembered: everything encoded again
        afresh = registry_module._text(
            replace(data, version=data.version + 1),
            [json.dumps(r.to_json()) for r in data.mids.values()],
            [json.dumps(e) for e in data.audit],
        )
        assert written == afresh
        assert Registry(path).read().get("mid-1").sqn.highest_seq == seq
