"""Edge: CLI. ``trelab mid list | activate | suspend | delete`` — the device side of the MID
lifecycle (TR 33.812 §7.1.2.1 threat 7): fetch the owning SHO's signed order from the network,
check it against the pinned owner key, apply it in the TPM (MID_STATE, which a use-gated K's
PolicyNV enforces) and receipt it with an AK-signed TPM2_NV_Certify. The SHO orders first:
``trelab operator order --mid ID --transition … --sho NAME``.
"""

from __future__ import annotations

import argparse
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome
from host.cli.provision_cmd import add_agent_options, mid_session

__all__ = ["register"]


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


def _transition(args: argparse.Namespace) -> Outcome:
    from host.lifecycle import apply_order

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
        "mid", help="MID lifecycle on the device: list, activate, suspend, delete"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser("list", help="MIDs of this TPM: owner, network state, TPM state byte")
    add_agent_options(p, network=False)
    p.set_defaults(func=_list)
    for verb, text in (
        ("activate", "apply the owner's activate (or resume) order"),
        ("suspend", "apply the owner's suspend order"),
        ("delete", "apply the owner's delete order (terminal)"),
    ):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("--mid", required=True, help="the MID id (trelab mid list)")
        add_agent_options(p)
        p.set_defaults(func=_transition)
