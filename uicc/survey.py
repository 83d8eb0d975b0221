"""Pure. Everything ``trelab card info`` reads off a card: the applications of EF.DIR, every
file :mod:`uicc.fs` declares under the MF, ADF.USIM and ADF.ISIM (decoded with the same codecs
the emulated card encodes with), the SUCI (by the USIM when EF.UST offers services 124 and 125,
by this host as the ME when it offers 124 only) and the ARA-M's access rules.

Files holding session keys (EF.Keys, EF.5GAUTHKEYS, the NAS security contexts, EF.Kc…) are
listed but never read out. A card that lacks a file, or guards it, is reported as such; a
file whose bytes do not decode is reported with its error. No I/O here: the client's link does it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from aka.suci import Suci, conceal
from trelab.errors import BadInput

from . import fs, seac
from .apdu import (
    CommandApdu,
    build_read_binary,
    build_read_record,
    build_select_aid,
    build_select_path,
    is_success,
)
from .errors import CardRefused
from .sw import SW_MORE_DATA_AVAILABLE, explain_sw
from .usim import Application, UsimClient

__all__ = [
    "FileReading",
    "Survey",
    "declared_files",
    "read_access_rules",
    "read_files",
    "suci_of",
    "survey",
]

SW_FILE_NOT_FOUND = 0x6A82


@dataclass(frozen=True)
class FileReading:
    """One declared EF as found on the card: its decoded value, or why there is none."""

    path: str
    fid: int
    structure: str | None = None
    value: Any = None
    status: str = "read"  # read | absent | refused | withheld | undecodable
    detail: str | None = None
    arr_reference: tuple[int, int] | None = None  # FCP tag 8B: (EF.ARR FID, record)
    access: dict[str, str] | None = None  # that record decoded: operation → condition

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "fid": f"{self.fid:04X}", "status": self.status}
        if self.structure is not None:
            out["structure"] = self.structure
        if self.status == "read":
            out["value"] = _jsonable(self.value)
        if self.detail is not None:
            out["detail"] = self.detail
        if self.arr_reference is not None:
            fid, record = self.arr_reference
            out["arr"] = {"fid": f"{fid:04X}", "record": record}
        if self.access is not None:
            out["access"] = self.access
        return out


@dataclass(frozen=True)
class Survey:
    """The whole card as `card info` shows it."""

    applications: list[Application]
    files: list[FileReading]
    suci: dict[str, Any] | None
    access_rules: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "applications": [{"aid": a.aid.hex(), "label": a.label} for a in self.applications],
            "files": [f.to_json() for f in self.files],
            "suci": self.suci,
            "access_rules": self.access_rules,
        }

    def value(self, path: str) -> Any:
        """The decoded value of the file at ``path`` (None when it was not read)."""
        found = next((f for f in self.files if f.path == path), None)
        return found.value if found is not None and found.status == "read" else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _tree(
    node: fs.DF | fs.ADF, prefix: str, path: tuple[int, ...]
) -> Iterator[tuple[str, tuple[int, ...], fs.EF]]:
    for child in node.children:
        if isinstance(child, fs.DF):
            yield from _tree(child, f"{prefix}/{child.name}", (*path, child.fid))
        else:
            short = child.name.rsplit("/", 1)[-1]
            yield f"{prefix}/{short}", (*path, child.fid), child


def declared_files() -> list[tuple[str, fs.EF]]:
    """(path as `card info` shows it, declaration) of every EF under the MF and the listed
    applications."""
    out = [(where, ef) for where, _, ef in _tree(fs.MF, "MF", ())]
    for app in fs.APPLICATIONS:
        if app.listed:
            out += [(where, ef) for where, _, ef in _tree(app, app.name, ())]
    return out


def _read_one(
    client: UsimClient, ef: fs.EF, where: str, path: tuple[int, ...], from_mf: bool
) -> FileReading:
    if ef.holds_keys:
        return FileReading(where, ef.fid, ef.structure, status="withheld", detail="session keys")
    body = b"".join(f.to_bytes(2, "big") for f in path)
    resp = client.send(build_select_path(body, from_mf=from_mf))
    if resp.sw == SW_FILE_NOT_FOUND:
        return FileReading(where, ef.fid, status="absent")
    if not is_success(resp.sw):
        return FileReading(where, ef.fid, status="refused", detail=f"SELECT: {resp.sw:04X}")
    try:
        fcp = fs.parse_fcp(resp.data)
    except BadInput as exc:
        return FileReading(where, ef.fid, status="undecodable", detail=f"FCP: {exc}")
    found = _read_content(client, ef, where, fcp)
    return replace(found, arr_reference=fcp.arr_reference)


def _read_content(client: UsimClient, ef: fs.EF, where: str, fcp: fs.Fcp) -> FileReading:
    structure = fcp.structure
    try:
        if structure in ("linear-fixed", "cyclic"):
            if not fcp.record_length or not fcp.records:
                return FileReading(where, ef.fid, structure, status="undecodable", detail="FCP")
            values = []
            for number in range(1, fcp.records + 1):
                rec = client.send(build_read_record(number, min(fcp.record_length, 256)))
                if not is_success(rec.sw):
                    raise CardRefused(f"READ RECORD {number}", rec.sw)
                values.append(ef.codec.decode(rec.data))
            return FileReading(where, ef.fid, structure, values)
        if structure == "ber-tlv":
            return FileReading(where, ef.fid, structure, ef.codec.decode(_ber_tlv_content(client)))
        if structure != "transparent":
            return FileReading(where, ef.fid, structure, status="undecodable", detail="structure")
        size = fcp.size or ef.size
        data = b""
        while len(data) < size:
            chunk = client.send(build_read_binary(len(data), min(size - len(data), 256)))
            if not is_success(chunk.sw):
                raise CardRefused("READ BINARY", chunk.sw)
            if not chunk.data:
                break
            data += chunk.data
        return FileReading(where, ef.fid, structure, ef.codec.decode(data))
    except CardRefused as exc:
        status = f"{exc.sw:04X} {explain_sw(exc.sw)}"
        return FileReading(where, ef.fid, structure, status="refused", detail=status)
    except BadInput as exc:
        return FileReading(where, ef.fid, structure, status="undecodable", detail=str(exc))


def _retrieve(client: UsimClient, tag: bytes) -> bytes:
    """One data object of the selected BER-TLV EF, all its blocks (TS 102 221 §11.3.1)."""
    resp = client.send(CommandApdu(0x80, 0xCB, 0x00, 0x80, tag, 256))
    out = resp.data
    for _ in range(256):  # 62F1: more data available, next block
        if resp.sw != SW_MORE_DATA_AVAILABLE:
            break
        resp = client.send(CommandApdu(0x80, 0xCB, 0x00, 0x00, b"", 256))
        out += resp.data
    if not is_success(resp.sw):
        raise CardRefused("RETRIEVE DATA", resp.sw)
    return out


def _ber_tlv_content(client: UsimClient) -> bytes:
    """The selected BER-TLV EF's objects as the file holds them: the tag list (tag 5C), then
    each object."""
    tags = fs.parse_ber_tlvs(_retrieve(client, b"\x5c"))
    if len(tags) != 1 or tags[0][0] != b"\x5c":
        raise BadInput("RETRIEVE DATA 5C: not a tag list")
    listed, i, out = tags[0][1], 0, b""
    while i < len(listed):
        tag, i = fs.read_ber_tag(listed, i)
        out += _retrieve(client, tag)
    return out


def read_files(client: UsimClient, applications: list[Application]) -> list[FileReading]:
    """Every declared EF under the MF and under each declared application the card lists."""
    out: list[FileReading] = []
    for where, path, ef in _tree(fs.MF, "MF", ()):
        out.append(_read_one(client, ef, where, path, from_mf=True))
    for app in fs.APPLICATIONS:
        if not app.listed:
            continue
        listed = next((a for a in applications if a.aid.startswith(app.aid[:7])), None)
        if listed is None:
            continue
        client.forget_selection()
        for where, path, ef in _tree(app, app.name, ()):
            resp = client.send(build_select_aid(listed.aid))
            if not is_success(resp.sw):
                out.append(FileReading(where, ef.fid, status="refused", detail="SELECT AID"))
                continue
            out.append(_read_one(client, ef, where, path, from_mf=False))
    client.forget_selection()
    return resolve_access(out)


def resolve_access(readings: list[FileReading]) -> list[FileReading]:
    """Each file's access rule, from the EF.ARR record its FCP names (TS 102 221 §9.2.4): the
    EF.ARR with that FID in the file's directory or the nearest one above it, as read in the
    same survey. Files whose rule cannot be found keep ``access`` None."""
    by_path = {r.path: r for r in readings}
    out: list[FileReading] = []
    for reading in readings:
        rule = _rule_for(reading, by_path)
        out.append(replace(reading, access=rule) if rule is not None else reading)
    return out


def _rule_for(reading: FileReading, by_path: dict[str, FileReading]) -> dict[str, str] | None:
    if reading.arr_reference is None:
        return None
    fid, record = reading.arr_reference
    dirs = reading.path.split("/")[:-1]
    candidates = ["/".join(dirs[:n]) for n in range(len(dirs), 0, -1)]
    if dirs and dirs[0].startswith("ADF."):
        candidates.append("MF")  # an application's parent is the MF
    for where in candidates:
        arr = by_path.get(f"{where}/EF.ARR")
        if arr is None or arr.fid != fid or arr.status != "read":
            continue
        values = arr.value
        if not isinstance(values, list) or not 1 <= record <= len(values):
            return None
        rules = values[record - 1]
        return fs.describe_access_rule(rules) if rules is not None else None
    return None


def suci_of(client: UsimClient, files: Survey | None = None) -> dict[str, Any] | None:
    """The SUCI as a UE would send it (TS 33.501 §6.12.2): computed by the USIM with GET IDENTITY
    when EF.UST offers 124 and 125; by this host from DF.5GS's EF.SUCI_Calc_Info (the first
    scheme it can use) when only 124; None without subscription identifier privacy."""
    ust = set(files.value("ADF.USIM/EF.UST") or ()) if files is not None else set()
    if not ust:
        return None
    if {124, 125} <= ust:
        try:
            suci: Suci = client.get_identity()
        except CardRefused as exc:
            return {"calculated_by": "usim", "error": str(exc)}
        return {"calculated_by": "usim", "suci": suci.to_string(), "scheme": int(suci.profile)}
    assert files is not None
    imsi = files.value("ADF.USIM/EF.IMSI")
    ad = files.value("ADF.USIM/EF.AD")
    if 124 not in ust or imsi is None or ad is None:
        return None
    info = files.value("ADF.USIM/DF.5GS/EF.SUCI_Calc_Info")
    ri = files.value("ADF.USIM/DF.5GS/EF.Routing_Indicator") or "0"
    if info is None or not info["schemes"]:
        return {"calculated_by": "me", "error": "EF.SUCI_Calc_Info unreadable or empty"}
    for entry in info["schemes"]:
        key = info["keys"][entry["key_index"] - 1] if entry["key_index"] else None
        if (entry["scheme"] != "null") != (key is not None):
            continue
        try:
            made = conceal(
                f"imsi-{imsi}",
                entry["scheme"],
                hn_public=bytes.fromhex(key["public"]) if key else b"",
                key_id=key["id"] if key else 0,
                mnc_length=ad["mnc_length"],
                routing_indicator=ri,
            )
        except BadInput:
            continue  # a key the ME cannot use: try the next scheme
        return {"calculated_by": "me", "suci": made.to_string(), "scheme": int(made.profile)}
    return {"calculated_by": "me", "error": "no usable scheme in EF.SUCI_Calc_Info"}


def read_access_rules(client: UsimClient) -> dict[str, Any]:
    """The ARA-M's rules (GP SEAC GET DATA 'FF40'), or that the card has no ARA-M."""
    resp = client.send(build_select_aid(fs.ARA_M_AID))
    client.forget_selection()
    if not is_success(resp.sw):
        return {"ara_m": False, "detail": f"SELECT: {resp.sw:04X}"}
    got = client.send(CommandApdu(0x80, 0xCA, 0xFF, 0x40, le=256))
    if not is_success(got.sw):
        return {"ara_m": True, "error": f"GET DATA: {got.sw:04X} {explain_sw(got.sw)}"}
    try:
        rules = seac.decode_rules(got.data)
    except BadInput as exc:
        return {"ara_m": True, "error": str(exc)}
    return {"ara_m": True, "rules": rules}


def survey(client: UsimClient) -> Survey:
    """Applications, files, SUCI and access rules of the card behind ``client``."""
    applications = client.applications()
    files = Survey(applications, read_files(client, applications), None, {})
    return Survey(applications, files.files, suci_of(client, files), read_access_rules(client))
