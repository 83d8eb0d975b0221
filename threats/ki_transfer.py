"""Edge: the operator store (through a KiTransfer). What the old operator can still do after Alternative 3a's Ki transfer
(TR 33.812 §7.1.2.3.1 threat 2, and the OTA keys it kept): the attacker's side of the
demonstrations, kept out of the operator code (:mod:`network.transfer`)."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from aka.algorithm import F2345
from aka.hss import Hss, Subscriber
from aka.sqn import SqnGenerator
from aka.usim import AkaMacFailure
from network.transfer import Authenticate, KiTransfer, record_algorithm
from protocol.errors import Refused
from protocol.records import HssRecord
from uicc.ota import (
    TAR_RFM_USIM,
    build_command_packet,
    build_envelope_sms_pp,
    build_sms_deliver,
    encode_compact,
    encode_scts,
)

__all__ = ["old_operator_packet", "old_operator_view", "threat_check"]


def old_operator_view(transfer: KiTransfer, old_imsi: str) -> HssRecord:
    """SHO-A's retained record of a transferred subscriber (threat 2: it still has K)."""
    with transfer.store.transaction() as tx:
        record = tx.hss(old_imsi)
    if record is None:
        raise Refused("unknown-subscriber", f"no record of {old_imsi}")
    return record


def threat_check(
    transfer: KiTransfer, old_imsi: str, new_imsi: str, authenticate: Authenticate
) -> dict[str, Any]:
    """TR 33.812 §7.1.2.3.1 threat 2 with SHO-A's retained K:

    - ``impersonation``: SHO-B challenges the subscriber (a vector of SHO-B's HSS); SHO-A
      computes RES, CK, IK from RAND with its copy of K — equal to XRES/CK/IK means SHO-A
      can pass as the subscriber and read its traffic;
    - ``false_network``: SHO-A makes an AUTN with its copy of K and the card checks it —
      success or a sync failure (the MAC verified) means the card trusts SHO-A's network.
    """
    old = old_operator_view(transfer, old_imsi)
    algorithm = record_algorithm(old)
    rand, _autn, xres, ck, ik = transfer.vector(new_imsi)
    guess: F2345 = algorithm.f2345(rand)
    impersonation = (
        hmac.compare_digest(guess.res, xres)
        and hmac.compare_digest(guess.ck, ck)
        and hmac.compare_digest(guess.ik, ik)
    )
    rogue = Hss(transfer.random_bytes)
    rogue.add(Subscriber(old.imsi, algorithm, old.amf, SqnGenerator(**old.sqn)))
    vector = rogue.generate_vectors(old.imsi, 1)[0]
    result = authenticate(vector.rand, vector.autn)
    return {
        "impersonation": impersonation,
        "false_network": not isinstance(result, AkaMacFailure),
        "card_answer_to_old_operator": result.to_json()["result"],
    }


def old_operator_packet(
    transfer: KiTransfer, holder: str, iccid: str, apdus: Sequence[bytes]
) -> bytes:
    """An ENVELOPE SHO-A could still build with the OTA keys it kept after the transfer: RFM
    USIM under its key set, its next counter. For demonstrations and tests."""
    card = transfer.keyring.card(holder, iccid)
    if card is None:
        raise Refused("unknown-card", f"{holder} never held OTA keys for {iccid}")
    keyset = max(card[0].keysets, key=lambda k: k.kvn)
    counter = max(card[0].counters.values(), default=0) + 1
    packet = build_command_packet(
        keyset, tar=TAR_RFM_USIM, counter=counter, data=encode_compact(apdus)
    )
    return build_envelope_sms_pp(build_sms_deliver(packet, timestamp=encode_scts(transfer.now())))
