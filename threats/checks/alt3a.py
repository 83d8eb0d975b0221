"""Edge: PC/SC, network. Alternative 3a (§7.1.2.3.1): the Ki transfer method — SHO-A hands a
UICC subscription (K, OPc, SQN, OTA keys) to SHO-B, which rewrites the card over the air
(:mod:`network.transfer`, :mod:`uicc.ota`). Extra attack: a replayed OTA packet.

The transfer rewrites its card (IMSI, OTA key sets, K), so it runs on a card of its own — a
fresh profile served on the second vpcd reader from this process — never on the lab's card.
The lab's card (reader 0) takes the non-destructive checks. One transfer per run
(:func:`ki_lab`) serves all four threats.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from threats import ki_transfer as ki_attacks
from threats.context import ThreatLab
from threats.result import Attempt, Finding, Recorder
from trelab.errors import Unavailable

if TYPE_CHECKING:
    from aka.hss import Subscriber
    from network.transfer import KiTransfer
    from threats.usim_tools import ServedCard

__all__ = ["KiLab", "ki_lab", "run_1", "run_2", "run_3", "run_4"]

SECOND_VPCD = ("127.0.0.1", 35964)
SECOND_READER = "Virtual PCD 00 01"
_READ_IMSI_BY_SFI = bytes.fromhex("00b0870009")  # RFM READ BINARY of EF.IMSI: harmless


class _LinkLost(Unavailable):
    """The staged malfunction: the link to the card drops after a packet reached it."""


@dataclass
class KiLab:
    """One completed transfer and what was observed along the way."""

    transfer: KiTransfer
    iccid: str
    old_imsi: str
    new_imsi: str
    card_imsi: str
    interrupted_at: int
    resumed: bool
    attach_sho_a: dict[str, Any]
    attach_sho_b: dict[str, Any]
    threats_before: dict[str, Any]
    threats_after: dict[str, Any]
    k_rotated: bool
    replay_status: str
    replay_counter: int
    old_operator_ota: str
    past_ck_recovered: bool
    envelopes: int
    steps: list[str] = field(default_factory=list)


def _subscription(profile: Any) -> Any:
    """What the card vendor gave SHO-A (Alternative 2 personalisation data)."""
    from aka.sqn import SqnGenerator
    from firmware_stubs.usim.personalise import hss_record
    from network.transfer import CardKeys, Subscription
    from uicc.ota import Keyset

    record = hss_record(profile)
    keys = CardKeys(
        tuple(Keyset(k.kvn, k.kic, k.kid) for k in profile.ota_keysets),
        {k.kvn: int.from_bytes(k.counter, "big") for k in profile.ota_keysets},
    )
    sqn = SqnGenerator(record.seq_he, record.ind, record.ind_bits, record.delta).to_json()
    return Subscription(
        profile.imsi,
        profile.iccid,
        "milenage",
        {},
        profile.k,
        profile.opc,
        profile.amf,
        sqn,
        keys,
    )


def ki_lab(ctx: ThreatLab) -> KiLab:
    """Run the transfer once: SHO-A serves the card, the transfer is interrupted (the link
    drops right after a packet reached the card) and resumed, SHO-B attaches, the replay and
    old-operator attempts are made, then K is rotated over the air."""

    def make() -> KiLab:
        from firmware_stubs.usim.personalise import new_profile_data
        from threats.usim_tools import ServedCard, new_iccid

        iccid = new_iccid()
        old_imsi = "00101" + "".join(str(b % 10) for b in os.urandom(10))
        data = new_profile_data(old_imsi, iccid, os.urandom)
        card = ServedCard(data, ctx.work / "ki-card", vpcd=SECOND_VPCD, reader=SECOND_READER)
        ctx.on_close(card.stop)
        try:
            return _transfer(ctx, card)
        finally:
            card.stop()  # the reader is free again as soon as the transfer is observed

    return ctx.once("ki-lab", make)


def _transfer(ctx: ThreatLab, card: ServedCard) -> KiLab:
    """The transfer itself, on ``card`` (a :class:`threats.usim_tools.ServedCard`)."""
    from aka.keyholder import SoftwareAes
    from aka.milenage import Milenage
    from aka.usim import AkaResult, AkaSuccess
    from network.transfer import KiTransfer, OtaKeyring, deliver
    from threats.usim_tools import usim_client

    profile = card.profile
    iccid = profile.iccid
    old_imsi = profile.imsi
    net = ctx.network()
    app = net.app()
    keyring = OtaKeyring(app.store)
    transfer = KiTransfer(net.config, app.store, keyring, now=lambda: int(time.time()))
    transfer.register_card("sho-a", _subscription(profile))
    envelopes: list[bytes] = []
    seen: list[tuple[bytes, AkaResult]] = []
    with card.link() as link:
        client = usim_client(link, profile)

        def authenticate(rand: bytes, autn: bytes) -> AkaResult:
            client.forget_selection()  # OTA scripts ran in the card's own context
            result: AkaResult = client.authenticate(rand, autn)
            seen.append((rand, result))
            return result

        attach_a = transfer.attach(old_imsi, authenticate)  # "past traffic" with SHO-A
        past_rand, past = seen[-1]

        def flaky(apdu: bytes) -> bytes:
            reply = link.transmit(apdu)
            envelopes.append(apdu)
            if len(envelopes) == 2:
                raise _LinkLost("link lost after the card took a packet (staged)")
            return reply

        def recording(apdu: bytes) -> bytes:
            envelopes.append(apdu)
            return link.transmit(apdu)

        try:
            transfer.run(
                holder="sho-a",
                requester="sho-b",
                imsi=old_imsi,
                iccid=iccid,
                send=flaky,
                rotate_k=False,
            )
            interrupted = 0
        except _LinkLost:
            interrupted = len(envelopes)
        first = transfer.run(
            holder="sho-a",
            requester="sho-b",
            imsi=old_imsi,
            iccid=iccid,
            send=recording,
            rotate_k=False,
        )
        new_imsi = first["new_imsi"]
        with app.store.transaction() as tx:
            imported = tx.hss(new_imsi)
        assert imported is not None
        client.forget_selection()
        card_imsi = client.read_imsi()
        attach_b = transfer.attach(new_imsi, authenticate)
        before = ki_attacks.threat_check(transfer, old_imsi, new_imsi, authenticate)
        # replay the IMSI-update packet SHO-B sent (counter already used)
        sho_b = keyring.card("sho-b", iccid)
        assert sho_b is not None
        imsi_packet = next(p for p in first["packets"] if p["step"] == "imsi")
        replay = deliver(link.transmit, envelopes[-1], sho_b[0].keyset(imsi_packet["kvn"]))
        # SHO-A's retained OTA keys
        sho_a = keyring.card("sho-a", iccid)
        assert sho_a is not None
        try:
            por = deliver(
                link.transmit,
                ki_attacks.old_operator_packet(transfer, "sho-a", iccid, [_READ_IMSI_BY_SFI]),
                max(sho_a[0].keysets, key=lambda k: k.kvn),
            )
            old_ota = por.status.text
        except Exception as exc:
            old_ota = f"refused: {exc}"
        second = transfer.run(
            holder="sho-a",
            requester="sho-b",
            imsi=old_imsi,
            iccid=iccid,
            send=recording,
            rotate_k=True,
        )
        after = ki_attacks.threat_check(transfer, old_imsi, new_imsi, authenticate)
    past_ck = Milenage(SoftwareAes(imported.k), imported.opc).f2345(past_rand).ck
    return KiLab(
        transfer=transfer,
        iccid=iccid,
        old_imsi=old_imsi,
        new_imsi=new_imsi,
        card_imsi=card_imsi,
        interrupted_at=interrupted,
        resumed=bool(first["resumed"]),
        attach_sho_a=attach_a,
        attach_sho_b=attach_b,
        threats_before=before,
        threats_after=after,
        k_rotated=bool(second["k_rotated"]),
        replay_status=replay.status.text,
        replay_counter=int(replay.counter),
        old_operator_ota=old_ota,
        past_ck_recovered=isinstance(past, AkaSuccess) and past.ck == past_ck,
        envelopes=len(envelopes),
        steps=[p["step"] for p in first["packets"] + second["packets"]],
    )


def _recorder(threat: str) -> Recorder:
    return Recorder(threat, tre="usim")


def _mac_failure(ctx: ThreatLab, a: Attempt, subscriber: Subscriber) -> bool:
    """An HSS holding ``subscriber`` (another operator's idea of the lab card's subscription)
    sends the lab card a vector: is the card's answer a MAC failure? (noted as
    ``card_answer``)."""
    from aka.hss import Hss
    from aka.usim import AkaMacFailure
    from threats.usim_tools import usim_client

    profile = ctx.card_profile()
    hss = Hss(os.urandom)
    hss.add(subscriber)
    vector = hss.generate_vectors(subscriber.imsi)[0]
    with ctx.usim_link() as link:
        answer = usim_client(link, profile).authenticate(vector.rand, vector.autn)
    a.note(card_answer=answer.to_json()["result"])
    return isinstance(answer, AkaMacFailure)


def run_1(ctx: ThreatLab) -> list[Finding]:
    """3a threat 1: the original MNO refuses to assist."""
    rec = _recorder("3a-1")
    with ctx.attack(
        rec,
        ("6",),
        "no-cooperation",
        "SHO-B tries to serve the lab card without SHO-A's cooperation: its own guess of K",
    ) as a:
        from aka.hss import Subscriber
        from aka.keyholder import SoftwareAes
        from aka.milenage import Milenage

        profile = ctx.card_profile()
        guess = Milenage(SoftwareAes(os.urandom(16)), os.urandom(16))
        if not _mac_failure(ctx, a, Subscriber(profile.imsi, guess)):
            a.not_blocked("the card accepted a network that does not know its K")
        else:
            a.organisational(
                "a contract (TR 33.812); tested: without SHO-A's K the card rejects SHO-B's"
                " network (MAC failure) — the subscription cannot move unless SHO-A hands it"
                " over"
            )
    return rec.findings


def run_2(ctx: ThreatLab) -> list[Finding]:
    """3a threat 2: the original MNO attacks subscribers after their transfer."""
    rec = _recorder("3a-2")
    with ctx.attack(
        rec,
        ("8",),
        "old-operator-keeps-k",
        "after the transfer (IMSI rewritten, SHO-B serving), SHO-A uses its copy of K: it"
        " computes the subscriber's RES/CK/IK for SHO-B's challenge and sends the card its own"
        " AUTN",
    ) as a:
        ki = ki_lab(ctx)
        a.note(**{f"before_rotation_{k}": v for k, v in ki.threats_before.items()})
        if ki.threats_before.get("impersonation") or ki.threats_before.get("false_network"):
            a.not_blocked(
                "until K is changed SHO-A can pass as the subscriber and as its network: a"
                " transfer cannot make SHO-A forget K (TR 33.812 rates this minor and relies on"
                " contracts and an OTA key change)",
                should_block=False,
            )
        else:
            a.blocked("SHO-A's K no longer matches even before the rotation")
    with ctx.attack(
        rec,
        ("8",),
        "k-rotation",
        "the same attack after SHO-B changed K over the air",
    ) as a:
        ki = ki_lab(ctx)
        a.note(
            k_rotated=ki.k_rotated,
            **{f"after_rotation_{k}": v for k, v in ki.threats_after.items()},
        )
        if ki.threats_after.get("impersonation") or ki.threats_after.get("false_network"):
            a.not_blocked("SHO-A's K still works after the rotation")
        else:
            a.blocked(
                "K rotated by OTA RFM (a proprietary credential command of the emulated USIM:"
                " standard USIMs cannot, per TR 33.812's editor's note): SHO-A's AUTN now fails"
                f" the card's MAC check ({ki.threats_after.get('card_answer_to_old_operator')})"
            )
    with ctx.attack(
        rec,
        ("9",),
        "old-imsi",
        "SHO-A locates the transferred subscriber by the IMSI it knew",
    ) as a:
        ki = ki_lab(ctx)
        a.note(old_imsi=ki.old_imsi, card_imsi=ki.card_imsi)
        if ki.card_imsi == ki.old_imsi:
            a.not_blocked("the card still carries SHO-A's IMSI")
        else:
            a.blocked(
                f"EF.IMSI rewritten by OTA RFM to SHO-B's {ki.card_imsi}; LOCI/PSLOCI/"
                "EPSLOCI invalidated"
            )
    with ctx.attack(
        rec,
        ("8", "9"),
        "old-operator-ota",
        "SHO-A sends the card a secured packet with the OTA keys it kept (RFM READ BINARY)",
    ) as a:
        ki = ki_lab(ctx)
        a.note(por=ki.old_operator_ota)
        if ki.old_operator_ota == "PoR OK":
            a.not_blocked("the card ran SHO-A's OTA command after the transfer")
        else:
            a.blocked(
                f"SHO-A's key set was deleted by RAM (PUT KEY, DELETE): {ki.old_operator_ota}"
            )
    with ctx.attack(
        rec,
        ("8", "9"),
        "replayed-ota",
        "replay SHO-B's recorded IMSI-update packet (same counter) to the card",
        extra="replayed-ota",
    ) as a:
        ki = ki_lab(ctx)
        a.note(por=ki.replay_status, counter=ki.replay_counter)
        if ki.replay_status == "PoR OK":
            a.not_blocked("the card ran a replayed secured packet")
        else:
            a.blocked(f"TS 102 225 counter (must be higher): PoR {ki.replay_status}")
    with ctx.attack(
        rec,
        ("10",),
        "fraud-detection",
        "detect anomalous traffic of transferred subscribers",
    ) as a:
        a.not_run(
            "no fraud detection system in the lab (no user-plane traffic to watch)", missing="part"
        )
    with ctx.attack(
        rec,
        ("11",),
        "contract-old-records",
        "SHO-A keeps the transferred subscriber's record",
    ) as a:
        ki = ki_lab(ctx)
        record = ki_attacks.old_operator_view(ki.transfer, ki.old_imsi)
        a.note(sho_a_record_state=record.state, sho_a_still_has_k=bool(record.k))
        a.organisational(
            f"contracts and inspections (TR 33.812); tested: SHO-A's record is marked"
            f" '{record.state}' yet still holds K — deletion cannot be proven technically"
        )
    return rec.findings


def run_3(ctx: ThreatLab) -> list[Finding]:
    """3a threat 3: the new MNO decrypts traffic recorded before the transfer."""
    rec = _recorder("3a-3")
    with ctx.attack(
        rec,
        ("8",),
        "past-traffic",
        "SHO-B recorded a RAND of the subscriber's AKA with SHO-A before the transfer; with the"
        " transferred K it derives that session's CK",
    ) as a:
        ki = ki_lab(ctx)
        a.note(past_ck_recovered=ki.past_ck_recovered)
        if ki.past_ck_recovered:
            a.not_blocked(
                "AKA has no forward secrecy: the transferred K opens every recorded session"
                " (TR 33.812's counter-measure is the law and contracts)",
                should_block=False,
            )
        else:
            a.blocked("the transferred K did not reproduce the recorded session's CK")
    return rec.findings


def run_4(ctx: ThreatLab) -> list[Finding]:
    """3a threat 4: users lose service through a malfunction during the transfer."""
    rec = _recorder("3a-4")
    with ctx.attack(
        rec,
        ("7",),
        "interrupted-transfer",
        "the link to the card drops right after the card applied a secured packet (its PoR is"
        " lost); the transfer is run again",
    ) as a:
        ki = ki_lab(ctx)
        a.note(
            interrupted_after_packets=ki.interrupted_at,
            resumed=ki.resumed,
            attach_sho_b=ki.attach_sho_b,
        )
        if not ki.interrupted_at:
            a.error("the staged link loss did not interrupt the transfer")
        elif ki.attach_sho_b.get("accepted") and ki.resumed:
            a.blocked(
                "journaled, resumable transfer (counters reserved on disk before sending): the"
                f" second run resumed and SHO-B's attach succeeded ({ki.attach_sho_b['result']})"
            )
        else:
            a.not_blocked(
                f"after the interruption the subscriber has no service: {ki.attach_sho_b}"
            )
    with ctx.attack(
        rec,
        ("7", "8"),
        "sqn-lost",
        "SHO-B's HSS starts the lab card's subscription with SQN_HE lost (reset to zero)",
    ) as a:
        from aka.hss import Hss, Subscriber
        from aka.usim import AkaSyncFailure
        from firmware_stubs.usim.personalise import hss_subscriber
        from threats.usim_tools import usim_client

        profile = ctx.card_profile()
        hss = Hss(os.urandom)
        known = hss_subscriber(profile)
        hss.add(Subscriber(profile.imsi, known.algorithm, known.amf))  # SQN_HE from zero
        answers = []
        with ctx.usim_link() as link:
            client = usim_client(link, profile)
            vector = hss.generate_vectors(profile.imsi)[0]
            first = client.authenticate(vector.rand, vector.autn)
            answers.append(first.to_json()["result"])
            if isinstance(first, AkaSyncFailure):
                hss.resynchronise(profile.imsi, vector.rand, first.auts)
                vector = hss.generate_vectors(profile.imsi)[0]
                second = client.authenticate(vector.rand, vector.autn)
                answers.append(second.to_json()["result"])
        a.note(answers=answers)
        if answers[-1] != "success":
            a.not_blocked(f"service not restored: {answers}")
        elif answers[0] != "sync_failure":
            a.error("the card accepted SQN_HE = 0: the malfunction was not staged")
        else:
            a.blocked(
                "AUTS resynchronisation (TS 33.102 §6.3.5) restored service: " + " → ".join(answers)
            )
    with ctx.attack(
        rec,
        ("8",),
        "no-common-profile",
        "SHO-B runs Milenage with its own OP constant instead of the subscriber's OPc",
    ) as a:
        from aka.hss import Subscriber
        from aka.keyholder import SoftwareAes
        from aka.milenage import Milenage

        profile = ctx.card_profile()
        other_op = Milenage(SoftwareAes(profile.k), os.urandom(16))
        if not _mac_failure(ctx, a, Subscriber(profile.imsi, other_op, profile.amf)):
            a.not_blocked("the card accepted another Milenage profile")
        else:
            a.organisational(
                "a specification task (TR 33.812); tested: with the right K but another OPc the"
                " card answers MAC failure — the transfer must carry OPc (trelab's does)"
            )
    with ctx.attack(
        rec,
        ("9",),
        "imsi-without-adm",
        "rewrite EF.IMSI of the lab card with only the user's PIN verified",
    ) as a:
        from threats.usim_tools import update_imsi_without_adm, usim_client

        profile = ctx.card_profile()
        with ctx.usim_link() as link:
            usim_client(link, profile)
            sw = update_imsi_without_adm(link, bytes.fromhex("080910101032547698"))
            imsi = usim_client(link, profile).read_imsi()
        a.note(sw=f"{sw:04X}", imsi_unchanged=imsi == profile.imsi)
        if sw == 0x9000 or imsi != profile.imsi:
            a.not_blocked("EF.IMSI changed without ADM")
        else:
            a.blocked(
                f"EF.IMSI access condition: UPDATE needs ADM (or OTA RFM) → {sw:04X}",
                sw=f"{sw:04X}",
            )
    return rec.findings
