"""Pure. Capability profiles of real TPM parts: declarative TOML files in ``profiles/``, one per
part, each naming where its numbers come from (public ``tpm2_getcap`` dumps, bug reports,
vendor documents) and which of them are assumptions.

A profile says what the part presents (fixed properties: manufacturer, vendor strings,
firmware, sizes), what it lacks relative to swtpm (commands, algorithms and modes, curves)
and its known errata. swtpm cannot do what the part does *beyond* swtpm — a command the part
has and swtpm lacks stays absent — so a profile only removes and relabels.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from firmware_stubs.tpm_proxy.wire import (
    ALGORITHMS,
    COMMANDS,
    CURVES,
    FIXED_PROPERTIES,
    Erratum,
    PartRules,
)
from trelab.errors import BadInput

__all__ = ["Profile", "load", "names"]

_STRING_PROPERTIES = {"MANUFACTURER", "VENDOR_STRING_1", "VENDOR_STRING_2",
                      "VENDOR_STRING_3", "VENDOR_STRING_4"}  # fmt: skip


@dataclass(frozen=True)
class Source:
    """Where some of a profile's numbers come from."""

    what: str
    where: str


@dataclass(frozen=True)
class Profile:
    """One part. ``fixed`` holds TPM_PT values by name (strings already packed to UINT32)."""

    name: str
    part: str
    summary: str
    fixed: Mapping[str, int]
    absent_commands: tuple[str, ...]
    absent_algorithms: tuple[str, ...]
    absent_curves: tuple[str, ...]
    errata: tuple[Erratum, ...]
    erratum_notes: Mapping[str, str]
    sources: tuple[Source, ...]
    assumed: tuple[str, ...]
    rsa_key_bits: tuple[int, ...] | None = None
    aes_key_bits: tuple[int, ...] | None = None

    def rules(self) -> PartRules:
        return PartRules.from_names(
            absent_commands=self.absent_commands,
            absent_algorithms=self.absent_algorithms,
            absent_curves=self.absent_curves,
            fixed=self.fixed,
            errata=self.errata,
            rsa_key_bits=self.rsa_key_bits,
            aes_key_bits=self.aes_key_bits,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "part": self.part,
            "summary": self.summary,
            "absent_commands": list(self.absent_commands),
            "absent_algorithms": list(self.absent_algorithms),
            "absent_curves": list(self.absent_curves),
            "rsa_key_bits": list(self.rsa_key_bits) if self.rsa_key_bits else None,
            "aes_key_bits": list(self.aes_key_bits) if self.aes_key_bits else None,
            "errata": [
                {
                    "name": e.name,
                    "command": e.command,
                    "trigger": e.trigger,
                    "effect": e.effect,
                    "note": self.erratum_notes.get(e.name, ""),
                }
                for e in self.errata
            ],
            "sources": [{"what": s.what, "where": s.where} for s in self.sources],
            "assumed": list(self.assumed),
        }


def _pack_string(text: str) -> int:
    raw = text.encode("ascii")
    if len(raw) > 4:
        raise ValueError(f"{text!r}: a vendor string property holds 4 characters")
    return int.from_bytes(raw.ljust(4, b"\x00"), "big")


def _parse(name: str, data: Mapping[str, Any]) -> Profile:
    fixed: dict[str, int] = {}
    for key, value in dict(data.get("fixed", {})).items():
        if key not in FIXED_PROPERTIES:
            raise ValueError(f"fixed property {key!r} is not a TPM_PT_ name")
        if isinstance(value, str):
            if key not in _STRING_PROPERTIES:
                raise ValueError(f"{key}: a number, not a string")
            fixed[key] = _pack_string(value)
        elif isinstance(value, int) and 0 <= value < 1 << 32:
            fixed[key] = value
        else:
            raise ValueError(f"{key}: {value!r} is not a UINT32")
    absent = data.get("absent", {})
    lists: dict[str, tuple[str, ...]] = {}
    for kind, table in (("commands", COMMANDS), ("algorithms", ALGORITHMS),
                        ("curves", CURVES)):  # fmt: skip
        items = tuple(str(x) for x in absent.get(kind, ()))
        unknown = [x for x in items if x not in table]
        if unknown:
            raise ValueError(f"absent {kind}: unknown names {unknown}")
        lists[kind] = items
    errata = []
    notes: dict[str, str] = {}
    for raw in data.get("errata", ()):
        erratum = Erratum(
            name=str(raw["name"]),
            command=str(raw["command"]),
            trigger=raw.get("trigger", "any"),
            effect=raw["effect"],
        )
        if erratum.command not in COMMANDS:
            raise ValueError(f"erratum {erratum.name}: unknown command {erratum.command}")
        if erratum.trigger not in ("any", "hmac-session"):
            raise ValueError(f"erratum {erratum.name}: trigger {erratum.trigger!r}")
        if erratum.effect not in ("failure-mode", "no-response"):
            raise ValueError(f"erratum {erratum.name}: effect {erratum.effect!r}")
        errata.append(erratum)
        notes[erratum.name] = str(raw.get("note", ""))
    sources = tuple(Source(str(s["what"]), str(s["where"])) for s in data.get("sources", ()))
    if not sources:
        raise ValueError("a profile names its sources")
    return Profile(
        name=name,
        part=str(data["part"]),
        summary=str(data.get("summary", "")),
        fixed=fixed,
        absent_commands=lists["commands"],
        absent_algorithms=lists["algorithms"],
        absent_curves=lists["curves"],
        errata=tuple(errata),
        erratum_notes=notes,
        sources=sources,
        assumed=tuple(str(a) for a in data.get("assumed", ())),
        rsa_key_bits=_bits(data.get("limits", {}).get("rsa_key_bits")),
        aes_key_bits=_bits(data.get("limits", {}).get("aes_key_bits")),
    )


def _bits(raw: Any) -> tuple[int, ...] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(b, int) and b > 0 for b in raw):
        raise ValueError(f"key sizes {raw!r}: a list of bit lengths")
    return tuple(raw)


def names() -> list[str]:
    """The profiles shipped with trelab, sorted."""
    folder = resources.files(__package__) / "profiles"
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in folder.iterdir()
        if entry.name.endswith(".toml")
    )


def load(name: str) -> Profile:
    """The profile called ``name``.

    Raises:
        BadInput: no such profile, or its file is malformed.
    """
    if name not in names():
        raise BadInput(f"{name!r} is not one of {', '.join(names())}", field="tpm_profile")
    text = (resources.files(__package__) / "profiles" / f"{name}.toml").read_text()
    try:
        return _parse(name, tomllib.loads(text))
    except (tomllib.TOMLDecodeError, KeyError, ValueError, TypeError) as exc:
        raise BadInput(f"TPM profile {name!r} is malformed: {exc}") from None
