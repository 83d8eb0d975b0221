"""Edge: the operator's SQLite store (:mod:`network.store`) and its OTA key file. Alternative 3a
of TR 33.812 (Ki transfer, §7.1.2.3.1): SHO-A hands a subscription to SHO-B, SHO-B imports
it into its HSS and rewrites the card over the air; the card itself is reached through a
``send(apdu) -> response`` callable (PC/SC or a modem's AT+CSIM), never from here.

The channel between the operators — a signed request, and a signed package whose
subscription only the requester can decrypt — is pure and lives in
:mod:`network.transfer_channel` (re-exported here).

What SHO-B then does, one secured packet each (:mod:`uicc.ota`), resumable after a crash at any
point (every step is journaled before and after; counters are reserved before sending):

- ``keys-add``: RAM PUT KEY of a new key set (under the transferred one);
- ``keys-delete``: RAM DELETE of the transferred key sets (under the new one) — SHO-A's OTA
  keys stop working;
- ``imsi``: RFM USIM: EF.IMSI ← an IMSI of SHO-B; EF.LOCI, EF.PSLOCI, EF.EPSLOCI invalidated
  (TMSI/P-TMSI/GUTI deleted, LAC/TAC FFFE, status "not updated"); EF.FPLMN cleared;
- ``k-rotation`` (optional): the card's proprietary credential command with a new K/OPc; the
  HSS record follows only once the PoR confirms. Threat 2 of §7.1.2.3.1 (the old operator keeps K and can
  masquerade as the subscriber or decrypt its traffic) is open until this step, and closed
  after — :func:`threats.ki_transfer.threat_check` shows both;
- ``activate``: the SHO-B HSS record becomes active.

Test hook: ``TRELAB_TEST_CRASH_AT=ota:<step>:<reserved|sent|done>`` or
``ota:import:exported`` (:mod:`trelab.crash`, read when a :class:`KiTransfer` is made) SIGKILLs
the process running the transfer with a packet's counter reserved but nothing sent, with its PoR
received but not yet acted on, after a step but before the journal records it, or after SHO-A's
export but before SHO-B's import.

Limits said plainly: SHO-A keeps its copy of K — nothing here can prove it deleted it
(TR 33.812's counter-measure is contractual); the K rotation needs a card that accepts a new K (this
project's emulated USIM does; standard USIMs do not, per TR 33.812's editor's note) and it is
only as confidential as the OTA channel: an old operator who recorded the SMS of ``keys-add``
(ciphered under keys it knows) can follow the new keys. Both operators live in one store and
one configuration here (the lab); the messages are built to travel between two.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cbor2

from aka.algorithm import AkaAlgorithm
from aka.hss import Hss, Subscriber
from aka.sqn import SqnGenerator
from aka.usim import AkaResult, AkaSuccess, AkaSyncFailure
from network.config import NetworkConfig
from network.store import Sealer, Store, StoreTransaction
from network.transfer_channel import (
    CardKeys,
    Subscription,
    TransferRequest,
    _algorithm,
    _opt_bytes,
    build_package,
    build_request,
    open_package,
    open_request,
)
from protocol.errors import Refused, RemoteProtocolError
from protocol.records import HssRecord
from trelab.atomic import atomic_write_text, file_lock
from trelab.crash import TRANSFER_CRASH_ENV, crash_hook, no_crash
from trelab.errors import BadInput, CheckFailed
from uicc import fs
from uicc.ota import (
    DEFAULT_SPI,
    RAM_OUTGOING_INS,
    RFM_OUTGOING_INS,
    TAR_RAM_ISD,
    TAR_RFM_USIM,
    Keyset,
    OtaRejected,
    PorStatus,
    RemoteResult,
    ResponsePacket,
    build_command_packet,
    build_delete_keyset,
    build_envelope_sms_pp,
    build_put_key,
    build_set_credentials,
    build_sms_deliver,
    encode_compact,
    encode_scts,
    parse_remote_response,
    parse_response_packet,
)

__all__ = [
    "STEPS",
    "CardKeys",
    "KiTransfer",
    "OtaKeyring",
    "OtaStep",
    "Subscription",
    "TransferRequest",
    "build_package",
    "build_request",
    "deliver",
    "imsi_update_script",
    "open_package",
    "open_request",
    "record_algorithm",
]

STEPS = ("import", "keys-add", "keys-delete", "imsi", "k-rotation", "activate")
_KEYRING_VERSION = 1
_SW_OK = 0x9000
_SW_NOT_FOUND = 0x6A88

Send = Callable[[bytes], bytes]
Authenticate = Callable[[bytes, bytes], AkaResult]
Progress = Callable[[str], None]


# ---- the operators' OTA key file ----------------------------------------------------------------


class OtaKeyring:
    """Per operator and card (ICCID): OTA key sets (sealed with the store key, AES-GCM, the
    associated data naming operator, card and version) and the last counter used; plus the
    journal of transfers in progress. One JSON file, rewritten atomically on every change —
    a counter is on disk before the packet that uses it leaves; read-modify-write under an
    exclusive lock (``<file>.lock``), so two runs never hand out the same counter."""

    def __init__(self, path: str | os.PathLike[str], store_key: bytes) -> None:
        self.path = Path(path)
        self._sealer = Sealer(store_key)

    def __repr__(self) -> str:
        return f"OtaKeyring({str(self.path)!r})"

    def _load(self) -> dict[str, Any]:
        try:
            doc: dict[str, Any] = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": _KEYRING_VERSION, "cards": {}, "transfers": {}}
        except (OSError, ValueError, RecursionError) as exc:
            raise BadInput(f"OTA key file {self.path}: unreadable ({type(exc).__name__})") from None
        if not isinstance(doc, dict) or doc.get("version") != _KEYRING_VERSION:
            raise BadInput(f"OTA key file {self.path}: unsupported version")
        return doc

    def _save(self, doc: dict[str, Any]) -> None:
        atomic_write_text(self.path, json.dumps(doc, indent=1, sort_keys=True) + "\n")

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, Any]]:
        """The document, locked for one read-modify-write; saved if the block completes."""
        with file_lock(self.path.with_name(self.path.name + ".lock")):
            doc = self._load()
            yield doc
            self._save(doc)

    def _where(self, sho: str, iccid: str, what: str) -> str:
        return f"ota/{sho}/{iccid}/{what}"

    def card(self, sho: str, iccid: str) -> tuple[CardKeys, dict[str, Any]] | None:
        """(keys, entry) of a card this operator manages, or None."""
        entry = self._load()["cards"].get(f"{sho}/{iccid}")
        if entry is None:
            return None
        keysets = tuple(
            _keyset_from(self._sealer.open(self._where(sho, iccid, f"kvn{kvn}"), bytes.fromhex(s)))
            for kvn, s in sorted(entry["keysets"].items(), key=lambda i: int(i[0]))
        )
        counters = {int(k): int(v) for k, v in entry["counters"].items()}
        return CardKeys(keysets, counters), entry

    def put_card(self, sho: str, iccid: str, keys: CardKeys, **meta: Any) -> None:
        with self._update() as doc:
            self._put_card(doc, sho, iccid, keys, meta)

    def _put_card(
        self, doc: dict[str, Any], sho: str, iccid: str, keys: CardKeys, meta: Mapping[str, Any]
    ) -> None:
        old = doc["cards"].get(f"{sho}/{iccid}", {})
        counters = {str(k): v for k, v in keys.counters.items()}
        for kvn, value in old.get("counters", {}).items():  # counters never go back
            counters[kvn] = max(int(value), int(counters.get(kvn, 0)))
        doc["cards"][f"{sho}/{iccid}"] = {
            **{k: v for k, v in old.items() if k not in ("keysets", "counters")},
            **meta,
            "keysets": {
                str(ks.kvn): self._sealer.seal(
                    self._where(sho, iccid, f"kvn{ks.kvn}"), _keyset_bytes(ks)
                ).hex()
                for ks in keys.keysets
            },
            "counters": counters,
        }

    def reserve_counter(self, sho: str, iccid: str, kvn: int) -> int:
        """The next counter for key version ``kvn`` — on disk before it is returned."""
        with self._update() as doc:
            entry = doc["cards"].get(f"{sho}/{iccid}")
            if entry is None:
                raise BadInput(f"{sho} holds no OTA keys for card {iccid}")
            value = int(entry["counters"].get(str(kvn), 0)) + 1
            entry["counters"][str(kvn)] = value
        return value

    def set_state(self, sho: str, iccid: str, state: str, **meta: Any) -> None:
        with self._update() as doc:
            doc["cards"][f"{sho}/{iccid}"].update(meta, state=state)

    # -- transfer journal --

    def journal(self, transfer_id: str) -> dict[str, Any]:
        entry: dict[str, Any] = self._load()["transfers"][transfer_id]
        return entry

    def find_transfer(self, iccid: str, holder: str, requester: str) -> str | None:
        """The id of the latest transfer of this card between these operators, if any."""
        found = [
            (entry["started"], str(tid))
            for tid, entry in self._load()["transfers"].items()
            if (entry["iccid"], entry["from"], entry["to"]) == (iccid, holder, requester)
        ]
        return max(found)[1] if found else None

    def put_journal(self, transfer_id: str, entry: Mapping[str, Any]) -> None:
        with self._update() as doc:
            doc["transfers"][transfer_id] = dict(entry)

    def seal(self, where: str, data: bytes) -> str:
        return self._sealer.seal(where, data).hex()

    def unseal(self, where: str, sealed: str) -> bytes:
        return self._sealer.open(where, bytes.fromhex(sealed))


def _keyset_bytes(ks: Keyset) -> bytes:
    return cbor2.dumps([ks.kvn, ks.kic, ks.kid, ks.dek], canonical=True)


def _keyset_from(data: bytes) -> Keyset:
    kvn, kic, kid, dek = cbor2.loads(data)
    return Keyset(int(kvn), bytes(kic), bytes(kid), _opt_bytes(dek))


# ---- card scripts ---------------------------------------------------------------------------------


def _plmn_bytes(imsi: str, mnc_length: int) -> bytes:
    """MCC/MNC of ``imsi`` as 3 bytes (TS 24.008 §10.5.1.3; MNC digit 3 F when 2 digits)."""
    mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_length]
    d = mcc + (mnc if len(mnc) == 3 else mnc + "F")
    # byte 1: MCC2 MCC1, byte 2: MNC3 MCC3, byte 3: MNC2 MNC1
    return bytes.fromhex(d[1] + d[0] + d[5] + d[2] + d[4] + d[3])


def imsi_update_script(imsi: str, mnc_length: int = 2) -> list[bytes]:
    """RFM USIM commands (UPDATE BINARY by SFI) for a new IMSI: EF.IMSI; EF.LOCI, EF.PSLOCI and
    EF.EPSLOCI invalidated — TMSI/P-TMSI/GUTI all FF, the PLMN of the new IMSI with the deleted
    LAC/TAC FFFE, status 01 "not updated" (TS 31.102 §4.2.17, §4.2.23, §4.2.91); EF.FPLMN
    emptied (the new operator's forbidden list starts empty)."""
    plmn = _plmn_bytes(imsi, mnc_length)

    def update(ef: fs.TransparentEF, content: bytes) -> bytes:
        assert ef.sfid is not None and len(content) == ef.size
        return bytes([0x00, 0xD6, 0x80 | ef.sfid, 0x00, len(content)]) + content

    return [
        update(fs.EF_IMSI, fs.EF_IMSI.codec.encode(imsi, fs.EF_IMSI.size)),
        update(fs.EF_LOCI, b"\xff" * 4 + plmn + b"\xff\xfe" + b"\xff" + b"\x01"),
        update(fs.EF_PSLOCI, b"\xff" * 7 + plmn + b"\xff\xfe\xff" + b"\x01"),
        update(fs.EF_EPSLOCI, b"\xff" * 12 + plmn + b"\xff\xfe" + b"\x01"),
        update(fs.EF_FPLMN, b"\xff" * fs.EF_FPLMN.size),
    ]


def record_algorithm(record: HssRecord) -> AkaAlgorithm:
    """The software algorithm of an HSS record (what an operator holding it can compute)."""
    return _record_algorithm(record)


def _record_algorithm(record: HssRecord) -> AkaAlgorithm:
    return _algorithm(record.algorithm, record.params, record.k, record.opc)


# ---- the orchestration (SHO-B side; SHO-A's export is one call) ----------------------------------


@dataclass(frozen=True, slots=True)
class OtaStep:
    """One OTA packet sent and what its PoR said."""

    step: str
    tar: bytes
    kvn: int
    counter: int
    packet_bytes: int
    status: PorStatus
    result: RemoteResult

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tar": self.tar.hex(),
            "kvn": self.kvn,
            "counter": self.counter,
            "packet_bytes": self.packet_bytes,
            "por": self.status.text,
            **self.result.to_json(),
        }


class KiTransfer:
    """Alternative 3a between two SHOs of one configuration and store (the lab)."""

    def __init__(
        self,
        config: NetworkConfig,
        store: Store,
        keyring: OtaKeyring,
        *,
        now: Callable[[], int],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.config = config
        self.store = store
        self.keyring = keyring
        self._now = now
        self._random = random_bytes
        self.now = now
        self.random_bytes = random_bytes
        self._crash = crash_hook(TRANSFER_CRASH_ENV) or no_crash  # test hook (module doc)

    def _sho(self, name: str) -> Any:
        sho = self.config.shos.get(name)
        if sho is None:
            raise BadInput(f"no SHO named {name!r} in the network configuration")
        return sho

    # -- SHO-A: the card it personalised (Alternative 2 data) --

    def register_card(self, sho: str, subscription: Subscription) -> bool:
        """Make ``sho`` the operator of a card: HSS record (active) and OTA keys. Idempotent;
        returns False if it was known already (its SQN and counters are then kept).

        Raises: Refused: the IMSI belongs to another SHO's record.
        """
        self._sho(sho)
        _algorithm(subscription.algorithm, subscription.params, subscription.k, subscription.opc)
        created = False
        with self.store.transaction() as tx:
            existing = tx.hss(subscription.imsi)
            if existing is not None and existing.sho != sho:
                raise Refused("imsi-taken", f"IMSI {subscription.imsi} is {existing.sho}'s")
            if existing is None:
                tx.put_hss(
                    HssRecord(
                        subscription.imsi,
                        sho,
                        subscription.algorithm,
                        dict(subscription.params),
                        subscription.k,
                        subscription.opc,
                        subscription.amf,
                        dict(subscription.sqn),
                        "active",
                        f"card:{subscription.iccid}:{sho}",
                    )
                )
                tx.audit(
                    self._now(), sho, "hss-record", subscription.imsi, {"card": subscription.iccid}
                )
                created = True
        if self.keyring.card(sho, subscription.iccid) is None:
            self.keyring.put_card(
                sho, subscription.iccid, subscription.ota, imsi=subscription.imsi, state="active"
            )
            created = True
        return created

    # -- SHO-A: export --

    def export(self, holder: str, wire_request: bytes) -> bytes:
        """SHO-A answers a request: checks it, marks its record "transferred" (K is kept: that
        is threat 2 of §7.1.2.3.1) and stops using the card's OTA keys; returns the signed package.

        Raises:
            SignatureInvalid, RemoteProtocolError: a bad request.
            Refused: SHO-A has no such subscription or card.
        """
        keys = {name: sho.key.public_key for name, sho in self.config.shos.items()}
        request = open_request(wire_request, keys, holder=holder, now=self._now())
        sho_a = self._sho(request.holder)
        card = self.keyring.card(request.holder, request.iccid)
        if card is not None and card[1].get("transferred_to", request.transfer_id) != (
            request.transfer_id
        ):
            raise Refused("already-transferred", f"card {request.iccid} was handed over already")
        with self.store.transaction() as tx:
            record = tx.hss(request.imsi)
            if record is None or record.sho != request.holder:
                raise Refused("unknown-subscriber", f"{request.holder} has no IMSI {request.imsi}")
            if card is None:
                raise Refused("unknown-card", f"{request.holder} holds no OTA keys for the card")
            subscription = Subscription(
                record.imsi,
                request.iccid,
                record.algorithm,
                dict(record.params),
                record.k,
                record.opc,
                record.amf,
                dict(record.sqn),
                card[0],
            )
            if record.state != "transferred":
                tx.put_hss(replace(record, state="transferred"))
            tx.audit(
                self._now(),
                request.holder,
                "ki-export",
                record.imsi,
                {"to": request.requester, "transfer": request.transfer_id},
            )
        self.keyring.set_state(
            request.holder, request.iccid, "transferred", transferred_to=request.transfer_id
        )
        return build_package(sho_a.key, request, subscription)

    # -- SHO-B: the whole transfer, resumable --

    def run(
        self,
        *,
        holder: str,
        requester: str,
        imsi: str,
        iccid: str,
        send: Send,
        rotate_k: bool,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Transfer ``imsi`` (card ``iccid``) from ``holder`` to ``requester`` and update the
        card through ``send``. Resumes the transfer of the same card if there is one: its
        missing steps run (after a crash; or the K rotation asked for later), done ones are
        skipped. Returns the report (transfer id, new IMSI, steps done now and before, OTA
        packets).

        Raises:
            OtaRejected: a PoR that is not "PoR OK".
            CheckFailed: a remote command failed, a PoR does not verify, or the card refused
                the ENVELOPE.
            Refused / SignatureInvalid / RemoteProtocolError: the operators' exchange failed.
        """
        say = progress or (lambda _line: None)
        self._sho(holder)
        self._sho(requester)
        if holder == requester:
            raise BadInput("a subscription cannot be transferred to the SHO that holds it")
        tid = self.keyring.find_transfer(iccid, holder, requester)
        resumed = tid is not None
        if tid is not None and self.keyring.journal(tid)["old_imsi"] != imsi:
            raise BadInput(
                f"card {iccid} was transferred for IMSI {self.keyring.journal(tid)['old_imsi']}"
            )
        if tid is None:
            self._check_holder(holder, imsi, iccid)
            tid = secrets.token_hex(8)
            self.keyring.put_journal(
                tid,
                {
                    "from": holder,
                    "to": requester,
                    "old_imsi": imsi,
                    "iccid": iccid,
                    "new_imsi": None,
                    "rotate_k": rotate_k,
                    "steps": {},
                    "started": self._now(),
                },
            )
        journal = self.keyring.journal(tid)
        if rotate_k and not journal["rotate_k"]:
            journal["rotate_k"] = True
            self.keyring.put_journal(tid, journal)
        done_before = [s for s in STEPS if journal["steps"].get(s)]
        packets: list[OtaStep] = []
        for step in STEPS:
            journal = self.keyring.journal(tid)
            if journal["steps"].get(step) or (step == "k-rotation" and not journal["rotate_k"]):
                continue
            say(f"{step} …")
            packets.extend(self._step(tid, step, send))
            self._crash(f"ota:{step}:done")
            journal = self.keyring.journal(tid)
            journal["steps"][step] = True
            self.keyring.put_journal(tid, journal)
        journal = self.keyring.journal(tid)
        return {
            "transfer_id": tid,
            "resumed": resumed,
            "from": holder,
            "to": requester,
            "iccid": iccid,
            "old_imsi": journal["old_imsi"],
            "new_imsi": journal["new_imsi"],
            "k_rotated": bool(journal["steps"].get("k-rotation")),
            "steps_done_before": done_before,
            "packets": [p.to_json() for p in packets],
        }

    def _check_holder(self, holder: str, imsi: str, iccid: str) -> None:
        """Before anything is journaled: the holder has this subscriber and this card.

        Raises: Refused: it has not (nothing is written).
        """
        with self.store.transaction() as tx:
            record = tx.hss(imsi)
        if record is None or record.sho != holder:
            raise Refused("unknown-subscriber", f"{holder} has no subscriber {imsi}")
        if record.state != "active":
            raise Refused("not-active", f"{holder}'s subscriber {imsi} is {record.state}")
        if self.keyring.card(holder, iccid) is None:
            raise Refused("unknown-card", f"{holder} holds no OTA keys for card {iccid}")

    def _step(self, tid: str, step: str, send: Send) -> list[OtaStep]:
        journal = self.keyring.journal(tid)
        requester, iccid = journal["to"], journal["iccid"]
        if step == "import":
            self._import(tid)
            return []
        if step == "activate":
            with self.store.transaction() as tx:
                record = tx.hss(journal["new_imsi"])
                assert record is not None
                tx.put_hss(replace(record, state="active"))
                tx.audit(self._now(), requester, "ki-activate", record.imsi, {"transfer": tid})
            return []
        card = self.keyring.card(requester, iccid)
        assert card is not None
        keys = card[0]
        if step == "keys-add":
            new = self._new_keyset(tid, keys)
            # signed with the transferred key set, which stays on the card until keys-delete
            # (on a retry after a lost PoR the card takes the same PUT KEY again)
            old = max(_others(keys, new.kvn), key=lambda k: k.kvn)
            out = self._packet(
                step, requester, iccid, old, TAR_RAM_ISD, [build_put_key(new, kek=old.kek)], send
            )
            self._expect_ok(out, step)
            self.keyring.put_card(requester, iccid, CardKeys((*_others(keys, new.kvn), new)))
            return [out]
        if step == "keys-delete":
            new = self._new_keyset(tid, keys)
            olds = [k.kvn for k in keys.keysets if k.kvn != new.kvn]
            if not olds:
                return []
            out = self._packet(
                step,
                requester,
                iccid,
                new,
                TAR_RAM_ISD,
                [build_delete_keyset(kvn) for kvn in olds],
                send,
            )
            # 6A88: already deleted (a retry after a lost PoR)
            self._expect_ok(out, step, also=(_SW_NOT_FOUND,))
            self.keyring.put_card(requester, iccid, CardKeys((new,), keys.counters))
            return [out]
        current = self._new_keyset(tid, keys)
        if step == "imsi":
            mnc_length = 3 if len(self._sho(requester).plmn) == 6 else 2
            script = imsi_update_script(journal["new_imsi"], mnc_length)
            out = self._packet(step, requester, iccid, current, TAR_RFM_USIM, script, send)
            self._expect_ok(out, step)
            with self.store.transaction() as tx:
                tx.audit(self._now(), requester, "ota-imsi", journal["new_imsi"], {"transfer": tid})
            return [out]
        if step == "k-rotation":
            k, opc = self._new_credentials(tid)
            script = [
                bytes([0x00, 0xA4, 0x04, 0x0C, 0x07]) + fs.USIM_AID[:7],  # SELECT ADF.USIM
                build_set_credentials(k, opc),
            ]
            out = self._packet(step, requester, iccid, current, TAR_RFM_USIM, script, send)
            self._expect_ok(out, step)
            with self.store.transaction() as tx:
                record = tx.hss(journal["new_imsi"])
                assert record is not None
                tx.put_hss(replace(record, k=k, opc=opc))
                tx.audit(self._now(), requester, "k-rotation", record.imsi, {"transfer": tid})
            return [out]
        raise BadInput(f"unknown transfer step {step!r}")

    def _import(self, tid: str) -> None:
        """Request, export (SHO-A) and import (SHO-B): new IMSI, HSS record "pending",
        the card's OTA keys on SHO-B's side. Idempotent by the transfer id."""
        journal = self.keyring.journal(tid)
        holder, requester = journal["from"], journal["to"]
        sho_b = self._sho(requester)
        request, ephemeral = build_request(
            sho_b.key,
            holder=holder,
            imsi=journal["old_imsi"],
            iccid=journal["iccid"],
            now=self._now(),
            transfer_id=tid,
        )
        package = self.export(holder, request.wire)
        self._crash("ota:import:exported")
        subscription = open_package(package, request, ephemeral, self._sho(holder).key.public_key)
        del ephemeral  # forward secrecy: nothing can open the package again
        request_id = f"ki-transfer:{tid}"
        with self.store.transaction() as tx:
            record = tx.hss_by_request(request_id)
            if record is None:
                new_imsi = self._allocate_imsi(tx, sho_b)
                record = HssRecord(
                    new_imsi,
                    requester,
                    subscription.algorithm,
                    dict(subscription.params),
                    subscription.k,
                    subscription.opc,
                    subscription.amf,
                    dict(subscription.sqn),
                    "pending",
                    request_id,
                )
                tx.put_hss(record)
                tx.audit(
                    self._now(),
                    requester,
                    "ki-import",
                    new_imsi,
                    {"old_imsi": subscription.imsi, "transfer": tid},
                )
        self.keyring.put_card(
            requester, subscription.iccid, subscription.ota, imsi=record.imsi, state="active"
        )
        journal["new_imsi"] = record.imsi
        self.keyring.put_journal(tid, journal)

    @staticmethod
    def _allocate_imsi(tx: StoreTransaction, sho: Any) -> str:
        width = 15 - len(sho.plmn)
        while True:
            msin = tx.next_msin(sho.name)
            if msin >= 10**width:
                raise Refused("imsi-exhausted", f"SHO {sho.name} has no IMSI left")
            imsi = str(sho.plmn) + str(msin).zfill(width)
            if tx.hss(imsi) is None:
                return imsi

    def _new_keyset(self, tid: str, keys: CardKeys) -> Keyset:
        """The key set this transfer rotates to: drawn once, journaled (sealed) before use."""
        journal = self.keyring.journal(tid)
        where = f"transfer/{tid}/keyset"
        if journal.get("new_keyset"):
            return _keyset_from(self.keyring.unseal(where, journal["new_keyset"]))
        used = _kvns(keys)
        free = [v for v in range(1, 16) if v not in used]
        if not free:
            raise BadInput("the card has 15 key sets: no version left to rotate to")
        new = Keyset(free[0], self._random(16), self._random(16), self._random(16))
        journal["new_keyset"] = self.keyring.seal(where, _keyset_bytes(new))
        self.keyring.put_journal(tid, journal)
        return new

    def _new_credentials(self, tid: str) -> tuple[bytes, bytes]:
        journal = self.keyring.journal(tid)
        where = f"transfer/{tid}/credentials"
        if journal.get("new_credentials"):
            k, opc = cbor2.loads(self.keyring.unseal(where, journal["new_credentials"]))
            return bytes(k), bytes(opc)
        with self.store.transaction() as tx:
            record = tx.hss(journal["new_imsi"])
            assert record is not None
        k, opc = self._random(len(record.k)), self._random(len(record.opc))
        journal["new_credentials"] = self.keyring.seal(where, cbor2.dumps([k, opc]))
        self.keyring.put_journal(tid, journal)
        return k, opc

    def _packet(
        self,
        step: str,
        sho: str,
        iccid: str,
        keyset: Keyset,
        tar: bytes,
        apdus: Sequence[bytes],
        send: Send,
    ) -> OtaStep:
        """Reserve a counter (on disk), send one secured packet, read and check its PoR."""
        counter = self.keyring.reserve_counter(sho, iccid, keyset.kvn)
        self._crash(f"ota:{step}:reserved")
        outgoing = RAM_OUTGOING_INS if tar == TAR_RAM_ISD else RFM_OUTGOING_INS
        script = encode_compact(apdus, outgoing=outgoing)
        packet = build_command_packet(keyset, tar=tar, counter=counter, data=script)
        tpdu = build_sms_deliver(packet, timestamp=encode_scts(self._now()))
        por = deliver(send, build_envelope_sms_pp(tpdu), keyset)
        self._crash(f"ota:{step}:sent")
        if por.status is not PorStatus.OK:
            raise OtaRejected(por.status, f"{step}: counter {counter}, key set {keyset.kvn}")
        if por.tar != tar or por.counter != counter:
            raise RemoteProtocolError(f"{step}: the PoR answers another packet")
        result = parse_remote_response(por.data, expanded=False)
        return OtaStep(step, tar, keyset.kvn, counter, len(packet), por.status, result)

    @staticmethod
    def _expect_ok(out: OtaStep, step: str, also: tuple[int, ...] = ()) -> None:
        sw = out.result.last_sw
        if sw is None:
            raise CheckFailed(f"{step}: no remote command ran")
        if sw != _SW_OK and sw not in also:
            raise CheckFailed(f"{step}: remote command {out.result.executed} answered {sw:04X}")

    # -- AKA with the HSS records: the attach test and the threat demonstration --

    def vector(self, imsi: str) -> tuple[bytes, bytes, bytes, bytes, bytes]:
        """(RAND, AUTN, XRES, CK, IK) from the HSS record of ``imsi``; SQN_HE moves in the
        same transaction (as the SHO's attach does)."""
        with self.store.transaction() as tx:
            record = tx.hss(imsi)
            if record is None:
                raise Refused("unknown-subscriber", f"no HSS record for {imsi}")
            hss = Hss(self._random)
            hss.add(
                Subscriber(imsi, _record_algorithm(record), record.amf, SqnGenerator(**record.sqn))
            )
            v = hss.generate_vectors(imsi, 1)[0]
            tx.put_hss(replace(record, sqn=hss.subscriber(imsi).sqn.to_json()))
        return v.rand, v.autn, v.xres, v.ck, v.ik

    def _resynchronise(self, imsi: str, rand: bytes, auts: bytes) -> None:
        with self.store.transaction() as tx:
            record = tx.hss(imsi)
            assert record is not None
            hss = Hss(self._random)
            hss.add(
                Subscriber(imsi, _record_algorithm(record), record.amf, SqnGenerator(**record.sqn))
            )
            hss.resynchronise(imsi, rand, auts)
            tx.put_hss(replace(record, sqn=hss.subscriber(imsi).sqn.to_json()))

    def attach(self, imsi: str, authenticate: Authenticate) -> dict[str, Any]:
        """AKA between the HSS record of ``imsi`` and the card, as an attach does: one vector,
        on AUTS one resynchronisation and a second vector; accepted if RES = XRES.

        Raises: MacMismatch: AUTS whose MAC-S does not verify.
        """
        resyncs = 0
        while True:
            rand, autn, xres, _ck, _ik = self.vector(imsi)
            result = authenticate(rand, autn)
            if isinstance(result, AkaSyncFailure) and resyncs == 0:
                self._resynchronise(imsi, rand, result.auts)
                resyncs += 1
                continue
            break
        accepted = isinstance(result, AkaSuccess) and hmac.compare_digest(result.res, xres)
        return {"imsi": imsi, "result": result.to_json()["result"], "accepted": accepted,
                "resyncs": resyncs}  # fmt: skip


def _kvns(keys: CardKeys) -> set[int]:
    return {k.kvn for k in keys.keysets}


def _others(keys: CardKeys, kvn: int) -> tuple[Keyset, ...]:
    return tuple(k for k in keys.keysets if k.kvn != kvn)


def deliver(send: Send, envelope: bytes, keyset: Keyset) -> ResponsePacket:
    """Send an SMS-PP download ENVELOPE and read the PoR in its response.

    Raises:
        CheckFailed: the card refused the ENVELOPE (status word) or sent no PoR.
        MacMismatch / RemoteProtocolError: a PoR that does not verify or parse.
    """
    response = send(envelope)
    sw = int.from_bytes(response[-2:], "big")
    if sw != _SW_OK:
        raise CheckFailed(f"ENVELOPE (SMS-PP download): card answered {sw:04X}")
    if len(response) == 2:
        raise CheckFailed("ENVELOPE (SMS-PP download): no proof of receipt")
    return parse_response_packet(response[:-2], spi=DEFAULT_SPI, keyset=keyset)
