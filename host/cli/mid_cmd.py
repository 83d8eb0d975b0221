"""Edge: CLI. ``trelab mid list | activate | suspend | delete`` — the one home of the MID
lifecycle verbs on the device (TR 33.812 §7.1.2.1 threat 7).

A provisioned MID has an owning SHO: the verb fetches the owner's signed order from the
network, checks it against the pinned owner key, applies it in the TPM (MID_STATE, which a
use-gated K's PolicyNV enforces) and receipts it with an AK-signed TPM2_NV_Certify. The SHO
orders first: ``trelab operator order --mid ID --transition … --sho NAME``.

``--local`` is for a MID imported locally (``trelab tpm mid import``), which no SHO owns: the
verb writes MID_STATE in the TPM directly, without the network. (``trelab tpm mid activate |
suspend | delete`` still parse, as unlisted spellings of ``--local``.)
"""

from __future__ import annotations

import argparse
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome, key_value_lines
from host.cli.provision_cmd import add_agent_options, mid_session

__all__ = ["local_transition", "register"]


def _list(args: argparse.Namespace) -> Outcome:
    from host.lifecycle import list_mids
    from tpm.connection import TpmConnection
    from tpm.registry import Registry

    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        rows = list_mids(conn, Registry(defaults.registry_path(args.registry)))
    data = {"version": output.JSON_VERSION, "mids": rows}
    lines = [
        f"{r['mid']}  {r['sho'] or '-':12} {r['imsi']:15} {r['state']:9} tpm={r['tpm_state']} "
        f"slot={r['slot']}"
        for r in rows
    ] or ["no MIDs"]
    return Outcome(data=data, text="\n".join(lines))


def local_transition(args: argparse.Namespace) -> Outcome:
    """``--local``: MID_STATE written in the TPM directly (``args.verb``: activate, suspend or
    delete) for a MID no SHO owns."""
    from tpm.connection import TpmConnection
    from tpm.mid import delete_mid, set_state
    from tpm.nv import MidState
    from tpm.registry import Registry

    registry = Registry(defaults.registry_path(args.registry))
    with TpmConnection(defaults.tcti(args.tpm)) as conn:
        if args.verb == "delete":
            record = delete_mid(conn, registry, args.mid)
        else:
            state = MidState.ACTIVE if args.verb == "activate" else MidState.SUSPENDED
            record = set_state(conn, registry, args.mid, state)
    data = {"mid": record.mid, "state": record.state, "slot": record.slot}
    return Outcome(data=data, text=key_value_lines(data))


def _transition(args: argparse.Namespace) -> Outcome:
    from host.lifecycle import apply_order

    if args.local:
        return local_transition(args)
    with mid_session(args) as s:
        info = s.info
        outcome = apply_order(
            s.conn, s.registry, s.transport, s.trust, mid_id=args.mid, verb=args.verb
        )
    data = {"version": output.JSON_VERSION, **outcome.to_json()}
    if outcome.applied:
        text = (
            f"MID {args.mid}: {outcome.applied} (command #{outcome.sequence} signed by "
            f"{info.sho}) applied, receipted → {outcome.state}"
        )
    else:
        text = f"MID {args.mid} is already {outcome.state}"
    return Outcome(data=data, text=text)


def register(nouns: Any) -> None:
    parser = nouns.add_parser(
        "mid",
        help="MID lifecycle on the device: list, activate, suspend, delete",
        description="The MID lifecycle on the device. activate, suspend and delete apply the"
        " owning SHO's signed order from the network; with --local they write MID_STATE in the"
        " TPM directly, for a MID imported locally (trelab tpm mid import) that no SHO owns.",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser("list", help="MIDs of this TPM: owner, network state, TPM state byte")
    add_agent_options(p, network=False)
    p.set_defaults(func=_list)
    for verb, text, local in (
        ("activate", "apply the owner's activate (or resume) order", "MID_STATE = ACTIVE"),
        ("suspend", "apply the owner's suspend order", "MID_STATE = SUSPENDED"),
        (
            "delete",
            "apply the owner's delete order (terminal)",
            "MID_STATE = DELETED (terminal) and its blobs dropped",
        ),
    ):
        p = verbs.add_parser(
            verb,
            help=text,
            description=f"{text[0].upper()}{text[1:]}: fetch the owning SHO's signed order from"
            " the network, check it against the pinned owner key, apply it in the TPM and"
            f" receipt it (AK-signed NV_Certify). With --local: {local}, written in the TPM"
            " directly, for a MID imported locally (trelab tpm mid import) that no SHO owns.",
        )
        p.add_argument("--mid", required=True, help="the MID id (trelab mid list)")
        p.add_argument(
            "--local",
            action="store_true",
            help=f"no owning SHO: {local} directly in the TPM (a locally imported MID; the"
            " network options are not used)",
        )
        add_agent_options(p)
        p.set_defaults(func=_transition)
