"""Edge: CLI. ``trelab subscription change --mid ID --to SHO`` — change of subscription on the
TPM TRE (TR 33.812; docs/provisioning.md §1.8): re-validation, MID-B from the new SHO, activation, an
attach test, then MID-A deleted with a TPM-signed deletion proof; if a step fails, MID-B is
rolled back and MID-A (untouched) is attach-tested again. Exit 0 when the change completed,
1 when it rolled back.
"""

from __future__ import annotations

import argparse
from typing import Any

from host.cli import output
from host.cli.output import Outcome
from host.cli.provision_cmd import add_agent_options, mid_session

__all__ = ["register"]


def _change(args: argparse.Namespace) -> Outcome:
    from host.subscription import change

    with mid_session(args) as s:
        info = s.info
        result = change(
            s.conn, s.registry, s.transport, s.trust, mid_id=args.mid, to_sho=args.to, network=s.url
        )
    data = {"version": output.JSON_VERSION, **result.to_json()}
    if result.rolled_back:
        works = "still works" if result.old_still_works else "did NOT pass its attach test"
        text = f"change to {args.to} failed ({result.failure}); rolled back: MID {args.mid} {works}"
        return Outcome(data=data, text=text, exit_code=1)
    text = (
        f"MID {result.new_mid} of {args.to} ACTIVE (attach ok); MID {args.mid} of {info.sho} "
        "deleted, TPM-signed proof receipted"
    )
    return Outcome(data=data, text=text)


def register(nouns: Any) -> None:
    parser = nouns.add_parser("subscription", help="change of subscription (new SHO) on the TPM")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    p = verbs.add_parser("change", help="move from MID --mid to a new MID of SHO --to")
    p.add_argument("--mid", required=True, help="the current (ACTIVE) MID")
    p.add_argument("--to", required=True, metavar="SHO", help="the new SHO (a pinned name)")
    add_agent_options(p)
    p.set_defaults(func=_change)
