"""Edge: CLI. ``trelab attach [--rat 3g|eps|5g]`` — AKA over the network with the SHO (TS
33.102 §6.3; EPS AKA, TS 33.401 §6.1; 5G AKA, TS 33.501 §6.1.3.2): the SHO makes a vector, the
TRE answers, the SHO checks RES (RES* and HRES* over 5G) and both ends confirm the anchor key
(K_ASME, K_SEAF); a synchronisation failure resynchronises with AUTS. Over 5G the identity
sent can be a SUCI (``--suci-profile``). The TRE is a TPM MID (``--mid ID``) or a UICC (Alternative 2, a pre-personalised
card registered with ``trelab operator add-subscriber``) through PC/SC (``--reader``) or a
modem's AT+CSIM (``--serial``). Exit 0 when the SHO accepts, 1 when it does not.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

from host.cli import defaults, output
from host.cli.output import Outcome
from host.cli.provision_cmd import network_transport, network_url
from trelab.errors import BadInput
from trelab.hexargs import parse_hex

__all__ = ["register"]


def _concealer(args: argparse.Namespace, agreement: Any = None) -> Any:
    """IMSI → SUCI for a 5G attach: Profile A/B with the home network key, else the null
    scheme (what a UE without a provisioned key sends); ``agreement`` holds the ephemeral key
    (default: software)."""
    from aka.suci import conceal

    profile = args.suci_profile
    if profile != "null" and args.hn_pub is None:
        raise BadInput(f"--hn-pub: --suci-profile {profile} needs the home network public key")
    hn_pub = b"" if profile == "null" else parse_hex("--hn-pub", args.hn_pub, length=(32, 33, 65))
    if not re.fullmatch(r"[0-9]{1,3}", args.hn_key_id) or int(args.hn_key_id) > 255:
        raise BadInput("--hn-key-id: expected 0 … 255")
    key_id = 0 if profile == "null" else int(args.hn_key_id)
    mnc_length = int(args.mnc_length)

    def make(imsi: str) -> str:
        return conceal(
            f"imsi-{imsi}",
            profile,
            hn_public=hn_pub,
            key_id=key_id,
            mnc_length=mnc_length,
            agreement=agreement,
        ).to_string()

    return make


def _card_concealer(client: Any, profile: str) -> Any:
    """IMSI → SUCI as the ME computes it with the home network key the card carries: the
    first entry of DF.5GS's EF.SUCI_Calc_Info for ``profile`` (A or B) with its key and key
    id, the card's routing indicator and MNC length (TS 31.102 §5.3.49).

    Raises:
        BadInput: the card's EF.SUCI_Calc_Info has no key of that profile.
        CardRefused: the card does not let the files be read.
    """
    from aka.suci import conceal

    settings = client.read_suci_settings()
    info = settings["info"] or {"schemes": [], "keys": []}
    entry = next((e for e in info["schemes"] if e["scheme"] == profile and e["key_index"]), None)
    if entry is None:
        raise BadInput(
            f"--suci-profile {profile}: the card's EF.SUCI_Calc_Info has no Profile {profile} "
            "key (pass --hn-pub)"
        )
    key = info["keys"][entry["key_index"] - 1]

    def make(imsi: str) -> str:
        return conceal(
            f"imsi-{imsi}",
            profile,
            hn_public=bytes.fromhex(key["public"]),
            key_id=key["id"],
            mnc_length=settings["mnc_length"],
            routing_indicator=settings["routing_indicator"],
        ).to_string()

    return make


def _explain_deleted(registry: Any, mid_id: str) -> None:
    """A MID ``trelab mid list`` still shows (the agent keeps deleted MIDs as a record) but
    whose K is gone from the TPM: say that, rather than "not in the registry".

    Raises:
        UnknownMid: the agent knows the MID, the TPM's registry no longer does.
    """
    from host.provision import AgentFiles
    from tpm.mid_errors import UnknownMid

    info = AgentFiles(registry).read().mids.get(mid_id)
    if info is not None and mid_id not in registry.read().mids:
        raise UnknownMid(
            f"MID {mid_id} is {info.state}: its K is no longer in the TPM "
            "(`trelab mid list` keeps it as a record)"
        )


def _attach(args: argparse.Namespace) -> Outcome:
    from aka.access import parse_rat

    rat = parse_rat(args.rat)
    if args.suci_profile and rat != "5g":
        raise BadInput("--suci-profile: a SUCI is sent over 5G only (--rat 5g)")
    from_usim = args.suci_profile == "usim"
    if from_usim and args.mid:
        raise BadInput("--suci-profile usim: only a card computes its SUCI (GET IDENTITY)")
    # a card's own home network key (DF.5GS) when --hn-pub is left out: read once the card is open
    from_card_file = (
        not args.mid and args.suci_profile in ("A", "B") and args.hn_pub is None and rat == "5g"
    )
    conceal = (
        _concealer(args)
        if rat == "5g" and args.suci_profile and not from_usim and not from_card_file
        else None
    )
    suci_holder = "software (the ME)" if conceal is not None else None
    url = network_url(args, _mid_network(args))
    transport = network_transport(url, trust_path=args.trust)
    if args.mid:
        from host.attach import attach_tpm
        from host.provision import flush_stale
        from tpm.connection import TpmConnection
        from tpm.registry import Registry

        with TpmConnection(defaults.tcti(args.tpm)) as conn:
            flush_stale(conn)
            if conceal is not None:
                from aka.suci import Profile
                from tpm.suci import holder_for

                profile = {"A": Profile.A, "B": Profile.B}.get(args.suci_profile, Profile.NULL)
                agreement, suci_holder = holder_for(conn, profile)
                conceal = _concealer(args, agreement)
            registry = Registry(defaults.registry_path(args.registry))
            _explain_deleted(registry, args.mid)
            done = attach_tpm(
                conn,
                registry,
                transport,
                mid_id=args.mid,
                imsi=args.imsi,
                rat=rat,
                conceal=conceal,
            )
            imsi = args.imsi or registry.read().get(args.mid).imsi
        tre = "tpm"
    else:
        from host.attach import attach_card
        from host.cli.card_cmd import PIN_ENV, open_link
        from uicc.usim import UsimClient

        with open_link(args) as link:
            client = UsimClient(link)
            pin = args.pin if args.pin is not None else os.environ.get(PIN_ENV)
            if pin:
                if hasattr(link, "reset_on_close"):
                    link.reset_on_close = True
                client.verify_pin(pin)
            if from_usim:

                def conceal(imsi: str) -> str:
                    return str(client.get_identity().to_string())

                suci_holder = "usim (GET IDENTITY)"
            elif from_card_file:
                conceal = _card_concealer(client, args.suci_profile)
                suci_holder = "software (the ME), key from the card's EF.SUCI_Calc_Info"
            imsi, done = attach_card(client, transport, imsi=args.imsi, rat=rat, conceal=conceal)
        tre = "uicc"
    data = {
        "version": output.JSON_VERSION,
        "tre": tre,
        "mid": args.mid,
        "imsi": imsi,
        "network": url,
        "rat": rat,
        "identity": "suci" if conceal is not None else "imsi",
        "suci_ephemeral_key": suci_holder,
        "accepted": done.accepted,
        "reason": done.reason,
        "resynchronised": done.resynchronised,
        "keys_match": done.keys_match,
    }
    resync = " after resynchronisation (AUTS)" if done.resynchronised else ""
    verdict = "accepted" if done.accepted else "refused"
    text = f"attach {imsi} ({tre}, {rat}): {verdict} by the SHO{resync}: {done.reason}"
    return Outcome(data=data, text=text, exit_code=0 if done.accepted else 1)


def _mid_network(args: argparse.Namespace) -> str | None:
    """The network a TPM MID was provisioned from (agent state), if known."""
    if not args.mid:
        return None
    from host.provision import AgentFiles
    from tpm.registry import Registry

    info = AgentFiles(Registry(defaults.registry_path(args.registry))).read().mids.get(args.mid)
    return info.network if info else None


def register(nouns: Any) -> None:
    p = nouns.add_parser(
        "attach", help="3G, EPS or 5G AKA with the SHO over the network (TPM MID or UICC)"
    )
    tre = p.add_mutually_exclusive_group(required=True)
    tre.add_argument("--mid", help="a TPM MID id (trelab mid list)")
    tre.add_argument("--reader", help="PC/SC reader of a card: index, exact name or regex")
    tre.add_argument("--serial", metavar="PORT", help="modem serial port (AT+CSIM)")
    p.add_argument("--imsi", help="IMSI (default: from the registry or the card's EF.IMSI)")
    p.add_argument(
        "--rat",
        choices=("3g", "eps", "5g"),
        default="3g",
        help="access: 3G AKA, EPS AKA (K_ASME) or 5G AKA (RES*, K_SEAF); default 3g",
    )
    p.add_argument(
        "--suci-profile",
        choices=("null", "A", "B", "usim"),
        help="5G: send a SUCI of this protection scheme instead of the IMSI; usim: the card "
        "computes it (GET IDENTITY, its own scheme and key)",
    )
    p.add_argument(
        "--hn-pub",
        help="home network public key for --suci-profile A|B, hex (with a card: default the "
        "key of that profile in the card's EF.SUCI_Calc_Info)",
    )
    p.add_argument("--hn-key-id", default="0", help="its key id, 0 … 255 (default 0)")
    p.add_argument("--mnc-length", default="2", choices=("2", "3"), help="digits of the MNC")
    p.add_argument("--pin", help="card PIN1 to verify first (or $TRELAB_CARD_PIN)")
    p.add_argument("--protocol", choices=("auto", "T0", "T1"), default="auto", help="PC/SC")
    p.add_argument("--baud", type=int, default=115200, help="serial speed (default 115200)")
    p.add_argument("--timeout", type=float, default=5.0, help="serial answer timeout, s")
    p.add_argument(
        "--tpm", metavar="TCTI", help="TCTI for --mid (default: $TRELAB_TPM, else the lab)"
    )
    p.add_argument("--registry", metavar="PATH", help="MID registry file (default: lab dir)")
    p.add_argument(
        "--network", metavar="URL", help="operator side (default: the MID's, $TRELAB_NETWORK)"
    )
    p.add_argument(
        "--trust",
        metavar="FILE",
        help="pinned device-trust.json, for its TLS CA (default: $TRELAB_DEVICE_TRUST, else "
        "the network config folder's)",
    )
    output.add_json_flag(p)
    p.set_defaults(func=_attach)
