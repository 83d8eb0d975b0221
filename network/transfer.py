"""Edge: the operator store (:mod:`network.store`), which also keeps the OTA keys. Alternative 3a
of TR 33.812 (Ki transfer, §7.1.2.3.1): SHO-A hands a subscription to SHO-B, SHO-B imports
it into its HSS and rewrites the card over the air; the card itself is reached through a
``send(apdu) -> response`` callable (PC/SC or a modem's AT+CSIM), never from here.

The channel between the operators — a signed request, and a signed package whose
subscription only the requester can decrypt — is pure and lives in
:mod:`network.transfer_channel` (re-exported here).

What SHO-B then does, one secured packet each (:mod:`uicc.ota`), resumable after a crash at any
point (what a step draws — new keys, a counter — is committed before its packet leaves; its
effects on the store and its journal entry commit in one transaction after):

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
received but not yet acted on, inside a step's closing transaction (so neither its effects nor
its journal entry are recorded), or after SHO-A's export but before SHO-B's import.

Limits said plainly: SHO-A keeps its copy of K — nothing here can prove it deleted it
(TR 33.812's counter-measure is contractual); the K rotation needs a card that accepts a new K (this
project's emulated USIM does; standard USIMs do not, per TR 33.812's editor's note) and it is
only as confidential as the OTA channel: an old operator who recorded the SMS of ``keys-add``
(ciphered under keys it knows) can follow the new keys.

Both operators may live in one store and one configuration (the lab's default), or be two
deployments: each its own configuration (its own private keys only) and store, the other
operator pinned as a peer (:class:`network.config.PeerConfig`: public key, TLS CA). SHO-A's
export then verifies the request with the key it pinned for SHO-B, and SHO-B opens the
package with the key it pinned for SHO-A, having reached SHO-A over TLS under the CA it pinned.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cbor2

from aka.algorithm import AkaAlgorithm
from aka.hss import Hss, Subscriber
from aka.sqn import SqnGenerator
from aka.usim import AkaResult, AkaSuccess, AkaSyncFailure
from network.config import NetworkConfig
from network.store import Store, StoreTransaction
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
from trelab.crash import TRANSFER_CRASH_ENV, crash_hook, no_crash
from trelab.errors import BadInput, CheckFailed, LocalProtocolError
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
    "KI_EXPORT_ENDPOINT",
    "STEPS",
    "CardKeys",
    "KiTransfer",
    "OtaKeyring",
    "OtaStep",
    "Subscription",
    "TransferJournal",
    "TransferRequest",
    "build_package",
    "build_request",
    "deliver",
    "http_exporter",
    "imsi_update_script",
    "open_package",
    "open_request",
    "record_algorithm",
]

STEPS = ("import", "keys-add", "keys-delete", "imsi", "k-rotation", "activate")
_SW_OK = 0x9000
_SW_NOT_FOUND = 0x6A88

Send = Callable[[bytes], bytes]
Authenticate = Callable[[bytes, bytes], AkaResult]
Progress = Callable[[str], None]
Effects = Callable[[StoreTransaction], None]  # a step's writes, committed with its journal entry
Exporter = Callable[[str, bytes], bytes]  # (holder, signed request) -> signed package
KI_EXPORT_ENDPOINT = "sho/ki-export"  # POST /v1/sho/ki-export on SHO-A's `network serve`


def http_exporter(
    base_url: str, *, timeout: float = 30.0, tls_ca: str | bytes | None = None
) -> Exporter:
    """SHO-A's export at its own deployment (``trelab network serve`` at ``base_url``; HTTPS
    with its pinned TLS CA ``tls_ca``, PEM): the signed request goes there, the signed,
    encrypted package comes back. Its refusals arrive as the same typed errors as in-process
    (Refused, SignatureInvalid, RemoteProtocolError, Unavailable)."""
    from protocol.client import HttpTransport

    transport = HttpTransport(base_url, timeout=timeout, tls_ca=tls_ca)

    def export(holder: str, wire_request: bytes) -> bytes:
        return transport.post(KI_EXPORT_ENDPOINT, wire_request)

    return export


def _nothing(tx: StoreTransaction) -> None:
    """A step with no effect on the store (only its journal entry)."""


# ---- the operators' OTA keys, in the store --------------------


@dataclass(frozen=True)
class TransferJournal:
    """One transfer in progress, as the store keeps it: who hands what to whom, the
    steps done, and the sealed secrets drawn for it (so a resumed run uses the same ones)."""

    holder: str
    requester: str
    old_imsi: str
    iccid: str
    started: int
    rotate_k: bool = False
    new_imsi: str | None = None
    steps: frozenset[str] = frozenset()
    new_keyset: str | None = field(default=None, repr=False)  # sealed
    new_credentials: str | None = field(default=None, repr=False)  # sealed

    def done(self, step: str) -> bool:
        return step in self.steps

    def imported_imsi(self) -> str:
        """The subscriber's IMSI at the new SHO.

        Raises:
            CheckFailed: the import step has not run (a step out of order).
        """
        if self.new_imsi is None:
            raise CheckFailed(f"transfer of card {self.iccid}: no new IMSI before the import")
        return self.new_imsi

    def to_plain(self) -> dict[str, Any]:
        return {
            "from": self.holder,
            "to": self.requester,
            "old_imsi": self.old_imsi,
            "iccid": self.iccid,
            "new_imsi": self.new_imsi,
            "rotate_k": self.rotate_k,
            "steps": {step: True for step in STEPS if step in self.steps},
            "started": self.started,
            **({"new_keyset": self.new_keyset} if self.new_keyset else {}),
            **({"new_credentials": self.new_credentials} if self.new_credentials else {}),
        }

    @classmethod
    def from_plain(cls, tid: str, doc: Any) -> TransferJournal:
        """Raises: BadInput: not a transfer journal entry (naming the field)."""
        where = f"OTA keyring: transfer {tid}"
        if not isinstance(doc, dict):
            raise BadInput("not an object", field=where)

        def text(key: str, *, optional: bool = False) -> Any:
            value = doc.get(key)
            if (value is None and optional) or isinstance(value, str):
                return value
            raise BadInput("missing or not text", field=f"{where}: {key}")

        steps = doc.get("steps", {})
        started = doc.get("started")
        if not isinstance(steps, dict) or not set(steps) <= set(STEPS):
            raise BadInput("unknown steps", field=f"{where}: steps")
        if not isinstance(started, int) or isinstance(started, bool):
            raise BadInput("not an integer", field=f"{where}: started")
        if not isinstance(doc.get("rotate_k", False), bool):
            raise BadInput("not true or false", field=f"{where}: rotate_k")
        return cls(
            holder=text("from"),
            requester=text("to"),
            old_imsi=text("old_imsi"),
            iccid=text("iccid"),
            started=started,
            rotate_k=doc.get("rotate_k", False),
            new_imsi=text("new_imsi", optional=True),
            steps=frozenset(step for step, done in steps.items() if done),
            new_keyset=text("new_keyset", optional=True),
            new_credentials=text("new_credentials", optional=True),
        )


class OtaKeyring:
    """Per operator and card (ICCID): OTA key sets (sealed with the store key, AES-GCM, the
    associated data naming operator, card and version) and the last counter used; plus the
    journal of transfers in progress — tables of the operator store (:mod:`network.store`), so
    a step's key changes, HSS changes, audit entries and journal entry commit together. Every
    method runs in the transaction ``tx`` it is given, else in one of its own; a counter is
    committed before the packet that uses it leaves, and two runs (or two servers) never draw
    the same one (the card's row is locked)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"OtaKeyring({self.store!r})"

    @contextlib.contextmanager
    def _tx(self, tx: StoreTransaction | None) -> Iterator[StoreTransaction]:
        if tx is not None:
            yield tx
            return
        with self.store.transaction() as own:
            yield own

    def card(
        self, sho: str, iccid: str, tx: StoreTransaction | None = None
    ) -> tuple[CardKeys, dict[str, Any]] | None:
        """(keys, facts: imsi, state, transferred_to) of a card this operator manages, or None."""
        with self._tx(tx) as t:
            found = t.ota_card(sho, iccid)
        if found is None:
            return None
        keysets, counters, meta = found
        return CardKeys(tuple(_keyset_from(keysets[v]) for v in sorted(keysets)), counters), meta

    def put_card(
        self,
        sho: str,
        iccid: str,
        keys: CardKeys,
        tx: StoreTransaction | None = None,
        **meta: Any,
    ) -> None:
        """Store the card's key sets; counters never go back; facts are merged."""
        with self._tx(tx) as t:
            old = t.ota_card(sho, iccid)
            counters = dict(keys.counters)
            facts: dict[str, Any] = {}
            if old is not None:
                facts = old[2]
                for kvn, value in old[1].items():
                    counters[kvn] = max(value, counters.get(kvn, 0))
            t.put_ota_card(
                sho,
                iccid,
                {ks.kvn: _keyset_bytes(ks) for ks in keys.keysets},
                counters,
                {**facts, **meta},
            )

    def reserve_counter(self, sho: str, iccid: str, kvn: int) -> int:
        """The next counter for key version ``kvn`` — committed before it is returned."""
        with self.store.transaction() as t:
            found = t.ota_card(sho, iccid)
            if found is None:
                raise BadInput(f"{sho} holds no OTA keys for card {iccid}")
            keysets, counters, meta = found
            value = counters.get(kvn, 0) + 1
            t.put_ota_card(sho, iccid, keysets, {**counters, kvn: value}, meta)
        return value

    def set_state(
        self, sho: str, iccid: str, state: str, tx: StoreTransaction | None = None, **meta: Any
    ) -> None:
        with self._tx(tx) as t:
            found = t.ota_card(sho, iccid)
            if found is None:
                raise BadInput(f"{sho} holds no OTA keys for card {iccid}")
            keysets, counters, facts = found
            t.put_ota_card(sho, iccid, keysets, counters, {**facts, **meta, "state": state})

    # -- transfer journal --

    def journal(self, transfer_id: str, tx: StoreTransaction | None = None) -> TransferJournal:
        """Raises: BadInput: no such transfer, or a malformed entry."""
        with self._tx(tx) as t:
            entry = t.ota_transfer(transfer_id)
        if entry is None:
            raise BadInput(f"no transfer {transfer_id} in the OTA keyring")
        return TransferJournal.from_plain(transfer_id, entry)

    def find_transfer(self, iccid: str, holder: str, requester: str) -> str | None:
        """The id of the latest transfer of this card between these operators, if any."""
        with self.store.transaction() as t:
            found = t.ota_transfer_ids(iccid, holder, requester)
        return max(found)[1] if found else None

    def put_journal(
        self, transfer_id: str, journal: TransferJournal, tx: StoreTransaction | None = None
    ) -> None:
        with self._tx(tx) as t:
            t.put_ota_transfer(
                transfer_id,
                journal.iccid,
                journal.holder,
                journal.requester,
                journal.started,
                journal.to_plain(),
            )

    def seal(self, where: str, data: bytes) -> str:
        return self.store.seal(where, data).hex()

    def unseal(self, where: str, sealed: str) -> bytes:
        return self.store.unseal(where, bytes.fromhex(sealed))


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
        if ef.sfid is None or len(content) != ef.size:  # the file declarations say otherwise
            raise LocalProtocolError(f"EF {ef.name}: no SFI or not {len(content)} bytes")
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
    """Alternative 3a between two SHOs: of one configuration and store (the lab), or each its
    own deployment (SHO-A reached through ``exporter``, pinned as a peer)."""

    def __init__(
        self,
        config: NetworkConfig,
        store: Store,
        keyring: OtaKeyring | None = None,
        *,
        now: Callable[[], int],
        random_bytes: Callable[[int], bytes] = os.urandom,
        exporter: Exporter | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.keyring = keyring if keyring is not None else OtaKeyring(store)
        # SHO-A's side of the exchange: in this process and store (one deployment holding
        # both operators), or SHO-A's own deployment over HTTP (:func:`http_exporter`)
        self._exporter: Exporter = exporter if exporter is not None else self.export
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

    def _holder_key(self, name: str) -> Any:
        """The key SHO-A's package must verify with: its own, or the one pinned for the peer."""
        key = self.config.transfer_key(name)
        if key is None:
            raise BadInput(
                f"no SHO or pinned peer named {name!r} in the network configuration "
                "(pin the other deployment with `trelab network add-peer`)"
            )
        return key

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
            if self.keyring.card(sho, subscription.iccid, tx) is None:
                self.keyring.put_card(
                    sho, subscription.iccid, subscription.ota, tx,
                    imsi=subscription.imsi, state="active",
                )  # fmt: skip
                created = True
        return created

    # -- SHO-A: export --

    def export(self, holder: str | None, wire_request: bytes) -> bytes:
        """SHO-A answers a request: checks it, marks its record "transferred" (K is kept: that
        is threat 2 of §7.1.2.3.1) and stops using the card's OTA keys; returns the signed package.
        ``holder`` None: the SHO the request names (a deployment answering for its SHOs).

        Raises:
            SignatureInvalid, RemoteProtocolError: a bad request.
            Refused: SHO-A has no such subscription or card.
        """
        keys = {name: sho.key.public_key for name, sho in self.config.shos.items()}
        keys.update({name: peer.public_key for name, peer in self.config.peers.items()})
        request = open_request(wire_request, keys, holder=holder, now=self._now())
        sho_a = self.config.shos.get(request.holder)
        if sho_a is None:
            raise Refused("unknown-holder", f"no SHO {request.holder!r} in this deployment")
        with self.store.transaction() as tx:
            card = self.keyring.card(request.holder, request.iccid, tx)
            if card is not None and card[1].get("transferred_to", request.transfer_id) != (
                request.transfer_id
            ):
                raise Refused(
                    "already-transferred", f"card {request.iccid} was handed over already"
                )
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
                request.holder, request.iccid, "transferred", tx,
                transferred_to=request.transfer_id,
            )  # fmt: skip
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
        self._sho(requester)
        if self._exporter == self.export:  # SHO-A's records are in this store
            self._sho(holder)
        else:
            self._holder_key(holder)
        if holder == requester:
            raise BadInput("a subscription cannot be transferred to the SHO that holds it")
        tid = self.keyring.find_transfer(iccid, holder, requester)
        resumed = tid is not None
        if tid is not None and self.keyring.journal(tid).old_imsi != imsi:
            raise BadInput(
                f"card {iccid} was transferred for IMSI {self.keyring.journal(tid).old_imsi}"
            )
        if tid is None:
            if self._exporter == self.export:  # SHO-A's records are in this store
                self._check_holder(holder, imsi, iccid)
            # else SHO-A checks at its export; a refusal there leaves this journal entry with
            # no step done, and running the transfer again asks SHO-A again
            tid = secrets.token_hex(8)
            self.keyring.put_journal(
                tid,
                TransferJournal(
                    holder=holder,
                    requester=requester,
                    old_imsi=imsi,
                    iccid=iccid,
                    started=self._now(),
                    rotate_k=rotate_k,
                ),
            )
        journal = self.keyring.journal(tid)
        if rotate_k and not journal.rotate_k:
            self.keyring.put_journal(tid, replace(journal, rotate_k=True))
        done_before = [s for s in STEPS if journal.done(s)]
        packets: list[OtaStep] = []
        for step in STEPS:
            journal = self.keyring.journal(tid)
            if journal.done(step) or (step == "k-rotation" and not journal.rotate_k):
                continue
            say(f"{step} …")
            sent, effects = self._step(tid, step, send)
            packets.extend(sent)
            with self.store.transaction() as tx:  # the step's effects and its journal entry
                effects(tx)
                journal = self.keyring.journal(tid, tx)
                self.keyring.put_journal(tid, replace(journal, steps=journal.steps | {step}), tx)
                self._crash(f"ota:{step}:done")  # before the commit: the step is lost whole
        journal = self.keyring.journal(tid)
        return {
            "transfer_id": tid,
            "resumed": resumed,
            "from": holder,
            "to": requester,
            "iccid": iccid,
            "old_imsi": journal.old_imsi,
            "new_imsi": journal.new_imsi,
            "k_rotated": journal.done("k-rotation"),
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

    def _step(self, tid: str, step: str, send: Send) -> tuple[list[OtaStep], Effects]:
        """Run one step of :data:`STEPS` (the table :data:`_STEP_ACTIONS` says how): its packets
        sent, and its effects on the store, for the caller to commit with the journal entry."""
        action = _STEP_ACTIONS.get(step)
        if action is None:
            raise BadInput(f"unknown transfer step {step!r}")
        return action(self, tid, self.keyring.journal(tid), send)

    def _hss(self, tx: StoreTransaction, imsi: str, tid: str) -> HssRecord:
        record = tx.hss(imsi)
        if record is None:
            raise CheckFailed(f"transfer {tid}: the store has no HSS record of {imsi}")
        return record

    def _card(self, sho: str, iccid: str, tid: str) -> CardKeys:
        card = self.keyring.card(sho, iccid)
        if card is None:
            raise CheckFailed(f"transfer {tid}: {sho} holds no OTA keys of card {iccid}")
        return card[0]

    def _step_import(
        self, tid: str, journal: TransferJournal, send: Send
    ) -> tuple[list[OtaStep], Effects]:
        return [], self._import(tid)

    def _step_activate(
        self, tid: str, journal: TransferJournal, send: Send
    ) -> tuple[list[OtaStep], Effects]:
        def effects(tx: StoreTransaction) -> None:
            record = self._hss(tx, journal.imported_imsi(), tid)
            tx.put_hss(replace(record, state="active"))
            tx.audit(self._now(), journal.requester, "ki-activate", record.imsi, {"transfer": tid})

        return [], effects

    def _step_keys_add(
        self, tid: str, journal: TransferJournal, send: Send
    ) -> tuple[list[OtaStep], Effects]:
        requester, iccid = journal.requester, journal.iccid
        keys = self._card(requester, iccid, tid)
        new = self._new_keyset(tid, keys)
        # signed with the transferred key set, which stays on the card until keys-delete
        # (on a retry after a lost PoR the card takes the same PUT KEY again)
        old = max(_others(keys, new.kvn), key=lambda k: k.kvn)
        step = "keys-add"
        out = self._packet(
            step, requester, iccid, old, TAR_RAM_ISD, [build_put_key(new, kek=old.kek)], send
        )
        self._expect_ok(out, step)
        added = CardKeys((*_others(keys, new.kvn), new))
        return [out], lambda tx: self.keyring.put_card(requester, iccid, added, tx)

    def _step_keys_delete(
        self, tid: str, journal: TransferJournal, send: Send
    ) -> tuple[list[OtaStep], Effects]:
        requester, iccid = journal.requester, journal.iccid
        keys = self._card(requester, iccid, tid)
        new = self._new_keyset(tid, keys)
        olds = [k.kvn for k in keys.keysets if k.kvn != new.kvn]
        if not olds:
            return [], _nothing
        step = "keys-delete"
        deletes = [build_delete_keyset(kvn) for kvn in olds]
        out = self._packet(step, requester, iccid, new, TAR_RAM_ISD, deletes, send)
        # 6A88: already deleted (a retry after a lost PoR)
        self._expect_ok(out, step, also=(_SW_NOT_FOUND,))
        kept = CardKeys((new,), keys.counters)
        return [out], lambda tx: self.keyring.put_card(requester, iccid, kept, tx)

    def _step_imsi(
        self, tid: str, journal: TransferJournal, send: Send
    ) -> tuple[list[OtaStep], Effects]:
        requester, iccid = journal.requester, journal.iccid
        current = self._new_keyset(tid, self._card(requester, iccid, tid))
        mnc_length = 3 if len(self._sho(requester).plmn) == 6 else 2
        script = imsi_update_script(journal.imported_imsi(), mnc_length)
        out = self._packet("imsi", requester, iccid, current, TAR_RFM_USIM, script, send)
        self._expect_ok(out, "imsi")

        def effects(tx: StoreTransaction) -> None:
            tx.audit(self._now(), requester, "ota-imsi", journal.imported_imsi(), {"transfer": tid})

        return [out], effects

    def _step_k_rotation(
        self, tid: str, journal: TransferJournal, send: Send
    ) -> tuple[list[OtaStep], Effects]:
        requester, iccid = journal.requester, journal.iccid
        current = self._new_keyset(tid, self._card(requester, iccid, tid))
        k, opc = self._new_credentials(tid)
        script = [
            bytes([0x00, 0xA4, 0x04, 0x0C, 0x07]) + fs.USIM_AID[:7],  # SELECT ADF.USIM
            build_set_credentials(k, opc),
        ]
        out = self._packet("k-rotation", requester, iccid, current, TAR_RFM_USIM, script, send)
        self._expect_ok(out, "k-rotation")

        def effects(tx: StoreTransaction) -> None:
            record = self._hss(tx, journal.imported_imsi(), tid)
            tx.put_hss(replace(record, k=k, opc=opc))
            tx.audit(self._now(), requester, "k-rotation", record.imsi, {"transfer": tid})

        return [out], effects

    def _import(self, tid: str) -> Effects:
        """Request and export (SHO-A, committed on its side); returns the import (SHO-B): new
        IMSI, HSS record "pending", the card's OTA keys on SHO-B's side, the new IMSI in the
        journal. Idempotent by the transfer id."""
        journal = self.keyring.journal(tid)
        holder, requester = journal.holder, journal.requester
        sho_b = self._sho(requester)
        request, ephemeral = build_request(
            sho_b.key,
            holder=holder,
            imsi=journal.old_imsi,
            iccid=journal.iccid,
            now=self._now(),
            transfer_id=tid,
        )
        package = self._exporter(holder, request.wire)
        self._crash("ota:import:exported")
        subscription = open_package(package, request, ephemeral, self._holder_key(holder))
        del ephemeral  # forward secrecy: nothing can open the package again
        request_id = f"ki-transfer:{tid}"

        def effects(tx: StoreTransaction) -> None:
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
                requester, subscription.iccid, subscription.ota, tx,
                imsi=record.imsi, state="active",
            )  # fmt: skip
            journal = self.keyring.journal(tid, tx)
            self.keyring.put_journal(tid, replace(journal, new_imsi=record.imsi), tx)

        return effects

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
        if journal.new_keyset:
            return _keyset_from(self.keyring.unseal(where, journal.new_keyset))
        used = _kvns(keys)
        free = [v for v in range(1, 16) if v not in used]
        if not free:
            raise BadInput("the card has 15 key sets: no version left to rotate to")
        new = Keyset(free[0], self._random(16), self._random(16), self._random(16))
        sealed = self.keyring.seal(where, _keyset_bytes(new))
        self.keyring.put_journal(tid, replace(journal, new_keyset=sealed))
        return new

    def _new_credentials(self, tid: str) -> tuple[bytes, bytes]:
        journal = self.keyring.journal(tid)
        where = f"transfer/{tid}/credentials"
        if journal.new_credentials:
            k, opc = cbor2.loads(self.keyring.unseal(where, journal.new_credentials))
            return bytes(k), bytes(opc)
        with self.store.transaction() as tx:
            record = self._hss(tx, journal.imported_imsi(), tid)
        k, opc = self._random(len(record.k)), self._random(len(record.opc))
        sealed = self.keyring.seal(where, cbor2.dumps([k, opc]))
        self.keyring.put_journal(tid, replace(journal, new_credentials=sealed))
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
            if record is None:
                raise Refused("unknown-subscriber", f"no HSS record of {imsi}")
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


#: How each step of :data:`STEPS` is run (each resumable: what it draws is journaled before it
#: sends; its effects and "done" commit in one transaction after).
_STEP_ACTIONS: dict[
    str, Callable[[KiTransfer, str, TransferJournal, Send], tuple[list[OtaStep], Effects]]
] = {
    "import": KiTransfer._step_import,
    "keys-add": KiTransfer._step_keys_add,
    "keys-delete": KiTransfer._step_keys_delete,
    "imsi": KiTransfer._step_imsi,
    "k-rotation": KiTransfer._step_k_rotation,
    "activate": KiTransfer._step_activate,
}


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
