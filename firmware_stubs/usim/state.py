"""Edge: filesystem. The card's non-volatile memory: SQN array, PIN/PUK/ADM counters, updated
files, and what over-the-air management changed (OTA counters, key sets, AKA credentials).

A :class:`CardStore` writes the whole :class:`CardState` atomically (:mod:`trelab.atomic`:
temp file, fsync, rename) on every change that matters, *before* the engine releases the
response; so a kill -9 leaves either the old or the new state and SQN can never roll back
(TS 33.102 Annex C). ``CardStore(None)`` keeps the state in memory only (unit tests).
The file holds PINs, CK/IK, and OTA keys and K/OPc once changed over the air, as a card's EEPROM
does: it is written with mode 0600.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aka.sqn import SqnState
from trelab.atomic import atomic_write_text
from trelab.errors import BadInput
from trelab.jsontext import load_json
from uicc.ota import MAX_COUNTER, Keyset

__all__ = [
    "OPTIONAL_PIN_NAMES",
    "PIN_NAMES",
    "AkaCredentials",
    "CardState",
    "CardStore",
    "OtaState",
    "PinState",
]

PIN_NAMES = ("pin1", "puk1", "adm1")  # every card has these
OPTIONAL_PIN_NAMES = ("pin2", "puk2")  # the second application PIN and its PUK, when personalised
FileContent = bytes | tuple[bytes, ...]  # transparent EF, or the records of a record EF


@dataclass(frozen=True)
class PinState:
    """One verification key (TS 102 221 §9.5): its value block, retries left, and enabled flag."""

    value: bytes = field(repr=False)  # 8 bytes, digits padded with FF
    remaining: int
    max_tries: int
    enabled: bool = True

    @property
    def blocked(self) -> bool:
        return self.remaining == 0


@dataclass(frozen=True)
class AkaCredentials:
    """K and OPc (Milenage) or TOPc (TUAK) written over the air, replacing the profile's."""

    k: bytes = field(repr=False)
    opc: bytes = field(repr=False)


@dataclass(frozen=True)
class OtaState:
    """What remote management changed (TS 102 225/102 226): the key sets (``None``: still the
    profile's), the last counter accepted per key version, and new AKA credentials if any."""

    keysets: tuple[Keyset, ...] | None = field(default=None, repr=False)
    counters: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    credentials: AkaCredentials | None = field(default=None, repr=False)

    @property
    def is_default(self) -> bool:
        return self.keysets is None and not self.counters and self.credentials is None

    def with_counter(self, kvn: int, value: int) -> OtaState:
        return replace(self, counters=MappingProxyType({**self.counters, kvn: value}))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"counters": {str(k): v for k, v in sorted(self.counters.items())}}
        if self.keysets is not None:
            out["keysets"] = [
                {
                    "kvn": ks.kvn,
                    "kic": ks.kic.hex(),
                    "kid": ks.kid.hex(),
                    **({"dek": ks.dek.hex()} if ks.dek is not None else {}),
                }
                for ks in self.keysets
            ]
        if self.credentials is not None:
            out["credentials"] = {
                "k": self.credentials.k.hex(),
                "opc": self.credentials.opc.hex(),
            }
        return out

    @classmethod
    def from_json(cls, data: Any) -> OtaState:
        """Raises: BadInput (via the caller's handler): malformed fields."""
        counters = {int(k): int(v) for k, v in data["counters"].items()}
        if any(not 1 <= k <= 15 or not 0 <= v <= MAX_COUNTER for k, v in counters.items()):
            raise BadInput("card state: OTA counters malformed")
        keysets = None
        if "keysets" in data:
            keysets = tuple(
                Keyset(
                    int(ks["kvn"]),
                    bytes.fromhex(ks["kic"]),
                    bytes.fromhex(ks["kid"]),
                    bytes.fromhex(ks["dek"]) if "dek" in ks else None,
                )
                for ks in data["keysets"]
            )
        credentials = None
        if "credentials" in data:
            raw = data["credentials"]
            credentials = AkaCredentials(bytes.fromhex(raw["k"]), bytes.fromhex(raw["opc"]))
        return cls(keysets, MappingProxyType(counters), credentials)


@dataclass(frozen=True)
class CardState:
    """Everything the card keeps across power cycles."""

    iccid: str
    sqn: SqnState
    pins: Mapping[str, PinState]
    files: Mapping[str, FileContent] = field(default_factory=dict, repr=False)
    ota: OtaState = field(default_factory=OtaState)
    access_rules: bytes = b""  # the ARA-M's REF-AR-DOs (GP SEAC), as STORE DATA left them
    access_rules_version: int = 0  # counts their changes: the refresh tag

    def with_pin(self, name: str, pin: PinState) -> CardState:
        return replace(self, pins=MappingProxyType({**self.pins, name: pin}))

    def with_file(self, name: str, content: FileContent) -> CardState:
        return replace(self, files=MappingProxyType({**self.files, name: content}))

    def with_ota(self, ota: OtaState) -> CardState:
        return replace(self, ota=ota)

    def with_access_rules(self, rules: bytes) -> CardState:
        return replace(self, access_rules=rules, access_rules_version=self.access_rules_version + 1)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": 1,
            "iccid": self.iccid,
            "sqn": self.sqn.to_json(),
            "pins": {
                name: {
                    "value": pin.value.hex(),
                    "remaining": pin.remaining,
                    "max_tries": pin.max_tries,
                    "enabled": pin.enabled,
                }
                for name, pin in self.pins.items()
            },
            "files": {
                name: content.hex() if isinstance(content, bytes) else [r.hex() for r in content]
                for name, content in self.files.items()
            },
        }
        if not self.ota.is_default:  # absent until the first OTA packet: older states still load
            out["ota"] = self.ota.to_json()
        if self.access_rules_version:  # likewise until the first STORE DATA to the ARA-M
            out["ara_m"] = {"rules": self.access_rules.hex(), "version": self.access_rules_version}
        return out

    @classmethod
    def from_json(cls, data: Any) -> CardState:
        """Inverse of :meth:`to_json`.

        Raises:
            BadInput: missing or malformed fields.
        """
        try:
            if data["version"] != 1:
                raise BadInput(f"card state: unsupported version {data['version']!r}")
            pins = {}
            for name in PIN_NAMES + OPTIONAL_PIN_NAMES:
                if name in OPTIONAL_PIN_NAMES and name not in data["pins"]:
                    continue
                raw = data["pins"][name]
                pin = PinState(
                    value=bytes.fromhex(raw["value"]),
                    remaining=int(raw["remaining"]),
                    max_tries=int(raw["max_tries"]),
                    enabled=bool(raw["enabled"]),
                )
                if len(pin.value) != 8 or not 0 <= pin.remaining <= pin.max_tries <= 15:
                    raise BadInput(f"card state: {name} malformed")
                pins[name] = pin
            files: dict[str, FileContent] = {}
            for name, content in data["files"].items():
                if isinstance(content, str):
                    files[str(name)] = bytes.fromhex(content)
                else:
                    files[str(name)] = tuple(bytes.fromhex(r) for r in content)
            return cls(
                iccid=str(data["iccid"]),
                sqn=SqnState.from_json(data["sqn"]),
                pins=MappingProxyType(pins),
                files=MappingProxyType(files),
                ota=OtaState.from_json(data["ota"]) if "ota" in data else OtaState(),
                access_rules=bytes.fromhex(data["ara_m"]["rules"]) if "ara_m" in data else b"",
                access_rules_version=int(data["ara_m"]["version"]) if "ara_m" in data else 0,
            )
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
            if isinstance(exc, BadInput):
                raise
            raise BadInput(f"card state: malformed ({type(exc).__name__})") from None


class CardStore:
    """Where a card's :class:`CardState` lives: a file (atomic writes) or memory (``path=None``)."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)
        self._memory: CardState | None = None
        self.writes = 0  # how many states were committed (tests, benchmarks)

    def __repr__(self) -> str:
        return f"CardStore(path={str(self.path) if self.path else None!r})"

    def load(self) -> CardState | None:
        """The stored state, or ``None`` for a card never written.

        Raises:
            BadInput: the file exists but is not a card state.
        """
        if self.path is None:
            return self._memory
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BadInput(f"card state {self.path}: cannot read ({exc.strerror})") from None
        state = CardState.from_json(load_json(raw, f"card state {self.path}"))
        self._memory = state
        return state

    def save(self, state: CardState) -> None:
        """Commit ``state``; returns only once it is durable. On an exception nothing changed."""
        if self.path is not None:
            atomic_write_text(self.path, json.dumps(state.to_json(), separators=(",", ":")))
        self._memory = state
        self.writes += 1
