"""Edge: ``trelab aka milenage | tuak | hmac-sha256 | 5g | eps | eap-aka-prime | suci |
suci-deconceal | bench`` — the AKA core (Milenage, TUAK, the HMAC-SHA-256 set) and what EPS, 5G
and EAP-AKA' derive from it, from the command line."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from aka.algorithm import F2345
from aka.autn import build_autn
from aka.gsm import c2_sres, c3_kc
from aka.kdf import Plmn, ck_ik_prime, eap_aka_prime_keys, five_g_keys, kasme
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage, opc_from_op
from host.cli.output import Outcome, add_json_flag, key_value_lines
from trelab.errors import BadInput
from trelab.hexargs import parse_hex

__all__ = ["register"]


def _challenge(args: argparse.Namespace) -> tuple[bytes, bytes, bytes]:
    """--rand, --sqn and --amf, every algorithm's inputs besides the keys."""
    return (
        parse_hex("--rand", args.rand, length=16),
        parse_hex("--sqn", args.sqn, length=6),
        parse_hex("--amf", args.amf, length=2),
    )


def _operator_key(
    args: argparse.Namespace, name: str, size: int, derive: Callable[[bytes], bytes]
) -> bytes:
    """The operator variant: ``--<name>c`` as given, or ``derive`` of ``--<name>`` (one of the
    two is required by the parser)."""
    given = getattr(args, name)
    if given is not None:
        return derive(parse_hex(f"--{name}", given, length=size))
    return parse_hex(f"--{name}c", getattr(args, f"{name}c"), length=size)


def _milenage_keys(args: argparse.Namespace) -> tuple[Milenage, bytes]:
    """Milenage with --k and --op/--opc (OPc derived from OP if need be), and OPc."""
    cipher = SoftwareAes(parse_hex("--k", args.k, length=16))
    opc = _operator_key(args, "op", 16, lambda op: opc_from_op(cipher, op))
    return Milenage(cipher, opc), opc


def _milenage(args: argparse.Namespace) -> Outcome:
    milenage, opc = _milenage_keys(args)
    rand, sqn, amf = _challenge(args)
    out = milenage.all_outputs(rand, sqn, amf)
    data = {"opc": opc.hex()} | {name: value.hex() for name, value in out.items()}
    data["autn"] = build_autn(sqn, out["f5"], amf, out["f1"]).hex()
    data["sres"] = c2_sres(out["f2"]).hex()
    data["kc"] = c3_kc(out["f3"], out["f4"]).hex()
    return Outcome(data=data, text=key_value_lines(data))


def _tuak(args: argparse.Namespace) -> Outcome:
    from aka.tuak import SoftwareKeccak, Tuak, topc_from_top

    holder = SoftwareKeccak(parse_hex("--k", args.k, length=(16, 32)))
    topc = _operator_key(args, "top", 32, lambda top: topc_from_top(holder, top, args.iterations))
    rand, sqn, amf = _challenge(args)
    tuak = Tuak(
        holder,
        topc,
        mac_bits=args.mac_bits,
        res_bits=args.res_bits,
        ck_bits=args.ck_bits,
        ik_bits=args.ik_bits,
        iterations=args.iterations,
    )
    f = tuak.f2345(rand)
    data = {
        "topc": topc.hex(),
        "f1": tuak.f1(rand, sqn, amf).hex(),
        "f1star": tuak.f1star(rand, sqn, amf).hex(),
        "f2": f.res.hex(),
        "f3": f.ck.hex(),
        "f4": f.ik.hex(),
        "f5": f.ak.hex(),
        "f5star": tuak.f5star(rand).hex(),
    }
    return Outcome(data=data, text=key_value_lines(data))


def _hmac_sha256(args: argparse.Namespace) -> Outcome:
    from aka.hmac_aka import HmacAka, SoftwareHmac, opc_from_op

    holder = SoftwareHmac(parse_hex("--k", args.k, length=(16, 32)))
    opc = _operator_key(args, "op", 32, lambda op: opc_from_op(holder, op))
    rand, sqn, amf = _challenge(args)
    algorithm = HmacAka(holder, opc, res_bits=args.res_bits)
    f = algorithm.f2345(rand)
    mac = algorithm.f1(rand, sqn, amf)
    data = {
        "opc": opc.hex(),
        "f1": mac.hex(),
        "f1star": algorithm.f1star(rand, sqn, amf).hex(),
        "f2": f.res.hex(),
        "f3": f.ck.hex(),
        "f4": f.ik.hex(),
        "f5": f.ak.hex(),
        "f5star": algorithm.f5star(rand).hex(),
        "autn": build_autn(sqn, f.ak, amf, mac).hex(),
    }
    return Outcome(data=data, text=key_value_lines(data))


def _strict_int(name: str, text: str, lo: int, hi: int) -> int:
    """ASCII decimal only (``int`` alone would take other scripts' digits)."""
    if not re.fullmatch(r"[0-9]{1,6}", text) or not lo <= int(text) <= hi:
        raise BadInput(f"{name}: expected a number {lo} … {hi}")
    return int(text)


def _aka_run(args: argparse.Namespace) -> tuple[dict[str, str], F2345, bytes, bytes]:
    """Milenage on the common options → (res ck ik ak autn as hex, outputs, RAND, SQN ⊕ AK)."""
    milenage, _ = _milenage_keys(args)
    rand, sqn, amf = _challenge(args)
    mac, out = milenage.f1_f2345(rand, sqn, amf)
    autn = build_autn(sqn, out.ak, amf, mac)
    data = {
        "res": out.res.hex(),
        "ck": out.ck.hex(),
        "ik": out.ik.hex(),
        "ak": out.ak.hex(),
        "autn": autn.hex(),
    }
    return data, out, rand, autn[:6]


def _five_g(args: argparse.Namespace) -> Outcome:
    data, out, rand, sqn_xor_ak = _aka_run(args)
    if args.abba is not None and args.supi is None:
        raise BadInput("--abba: only with --supi (K_AMF needs both)")
    abba = b"\0\0" if args.abba is None else parse_hex("--abba", args.abba)
    keys = five_g_keys(
        out.ck, out.ik, out.res, rand, sqn_xor_ak, args.snn, supi=args.supi, abba=abba
    )
    data |= {
        "res_star": keys.res_star.hex(),
        "hxres_star": keys.hxres_star.hex(),
        "kausf": keys.kausf.hex(),
        "kseaf": keys.kseaf.hex(),
    }
    if keys.kamf is not None:
        data["kamf"] = keys.kamf.hex()
    return Outcome(data=data, text=key_value_lines(data))


def _eps(args: argparse.Namespace) -> Outcome:
    data, out, _, sqn_xor_ak = _aka_run(args)
    data["kasme"] = kasme(out.ck, out.ik, Plmn.parse(args.plmn), sqn_xor_ak).hex()
    return Outcome(data=data, text=key_value_lines(data))


def _eap_aka_prime(args: argparse.Namespace) -> Outcome:
    data, out, _, sqn_xor_ak = _aka_run(args)
    ck_p, ik_p = ck_ik_prime(out.ck, out.ik, args.network_name, sqn_xor_ak)
    data |= {"ck_prime": ck_p.hex(), "ik_prime": ik_p.hex()}
    if args.identity is not None:
        keys = eap_aka_prime_keys(ck_p, ik_p, args.identity)
        data |= {name: value.hex() for name, value in keys._asdict().items()}
    return Outcome(data=data, text=key_value_lines(data))


def _suci(args: argparse.Namespace) -> Outcome:
    from aka.suci import SoftwareAgreement, conceal

    key_id = _strict_int("--hn-key-id", args.hn_key_id, 0, 255)
    if args.profile == "null":
        hn_pub, agreement = b"", None
    else:
        if args.hn_pub is None:
            raise BadInput(f"--hn-pub: Profile {args.profile} needs the home network public key")
        hn_pub = parse_hex("--hn-pub", args.hn_pub, length=(32, 33, 65))
        eph = None if args.eph_priv is None else parse_hex("--eph-priv", args.eph_priv, length=32)
        agreement = SoftwareAgreement(eph)
    suci = conceal(
        args.supi,
        args.profile,
        hn_public=hn_pub,
        key_id=key_id,
        mnc_length=int(args.mnc_length),
        routing_indicator=args.routing_indicator,
        agreement=agreement,
    )
    data = {"suci": suci.to_string(), "scheme_output": suci.scheme_output.hex()}
    return Outcome(data=data, text=key_value_lines(data))


def _suci_deconceal(args: argparse.Namespace) -> Outcome:
    from aka.suci import Profile, Suci, deconceal

    suci = Suci.parse(args.suci)
    hn_priv = b""
    if suci.profile is not Profile.NULL:
        if args.hn_priv is None:
            raise BadInput("--hn-priv: needed for a concealed SUCI")
        hn_priv = parse_hex("--hn-priv", args.hn_priv, length=32)
    data = {"supi": deconceal(suci, hn_priv)}
    return Outcome(data=data, text=key_value_lines(data))


def _aka_inputs(
    p: argparse.ArgumentParser, *, k: str = "16 bytes", operator: str = "op", size: int = 16
) -> None:
    """--k, the operator variant (--op or --opc; --top or --topc) and --rand, --sqn, --amf."""
    p.add_argument("--k", required=True, help=f"K, {k} hex")
    group = p.add_mutually_exclusive_group(required=True)
    name = operator.upper()
    group.add_argument(f"--{operator}", help=f"{name}, {size} bytes hex ({name}c is derived)")
    group.add_argument(f"--{operator}c", help=f"{name}c, {size} bytes hex")
    for field, length in (("rand", 16), ("sqn", 6), ("amf", 2)):
        p.add_argument(f"--{field}", required=True, help=f"{field.upper()}, {length} bytes hex")


def _bench(args: argparse.Namespace) -> Outcome:
    from bench.aka_bench import run_aka_bench

    if args.subscribers < 1:
        raise BadInput("--subscribers: must be ≥ 1")
    result = run_aka_bench(subscribers=args.subscribers, kernel=args.kernel)
    data = result.to_json()
    text = (
        f"device-side AKA ({data['algorithm']}, {data['kernel']} kernel): "
        f"median {data['aka_ns_median']:.0f} ns "
        f"({data['aka_vs_raw_aes']:.1f}× one raw AES call of {data['raw_aes_ns_median']:.0f} ns)\n"
        f"vector generation: {data['av_per_s']:,.0f} vectors/s over "
        f"{data['subscribers']:,} subscribers (batch {data['batch']})"
    )
    return Outcome(data=data, text=text)


def register(nouns: Any) -> None:
    parser = nouns.add_parser(
        "aka",
        help="Milenage, TUAK, the HMAC-SHA-256 set, and the EPS / 5G / EAP-AKA' keys and SUCI",
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("milenage", help="all Milenage outputs for one input (TS 35.206)")
    _aka_inputs(p)
    add_json_flag(p)
    p.set_defaults(func=_milenage)

    p = verbs.add_parser("tuak", help="all TUAK outputs for one input (TS 35.231)")
    _aka_inputs(p, k="16 or 32 bytes", operator="top", size=32)
    p.add_argument("--iterations", type=int, default=1, help="Keccak iterations (default 1)")
    p.add_argument("--mac-bits", type=int, default=64, choices=(64, 128, 256))
    p.add_argument("--res-bits", type=int, default=64, choices=(32, 64, 128, 256))
    p.add_argument("--ck-bits", type=int, default=128, choices=(128, 256))
    p.add_argument("--ik-bits", type=int, default=128, choices=(128, 256))
    add_json_flag(p)
    p.set_defaults(func=_tuak)

    p = verbs.add_parser(
        "hmac-sha256", help="all HMAC-SHA-256 set outputs for one input (docs/hmac-aka.md)"
    )
    _aka_inputs(p, k="16 or 32 bytes", size=32)
    p.add_argument("--res-bits", type=int, default=64, choices=(32, 64, 128))
    add_json_flag(p)
    p.set_defaults(func=_hmac_sha256)

    p = verbs.add_parser(
        "5g", help="5G AKA: RES*, HXRES*, K_AUSF, K_SEAF, K_AMF (TS 33.501 Annex A)"
    )
    _aka_inputs(p)
    p.add_argument("--snn", required=True, help="serving network name, e.g. 5G:mnc093.mcc208…")
    p.add_argument("--supi", help="imsi-DIGITS: also derive K_AMF")
    p.add_argument("--abba", help="ABBA, hex (default 0000; with --supi)")
    add_json_flag(p)
    p.set_defaults(func=_five_g)

    p = verbs.add_parser("eps", help="EPS AKA: K_ASME (TS 33.401 Annex A.2)")
    _aka_inputs(p)
    p.add_argument("--plmn", required=True, help="serving network MCC and MNC, 5 or 6 digits")
    add_json_flag(p)
    p.set_defaults(func=_eps)

    p = verbs.add_parser(
        "eap-aka-prime", help="EAP-AKA': CK', IK' (TS 33.402 A.2) and the master keys (RFC 9048)"
    )
    _aka_inputs(p)
    p.add_argument("--network-name", required=True, help="access network name, e.g. WLAN")
    p.add_argument("--identity", help="EAP identity: also derive K_encr, K_aut, K_re, MSK, EMSK")
    add_json_flag(p)
    p.set_defaults(func=_eap_aka_prime)

    p = verbs.add_parser("suci", help="conceal an IMSI-type SUPI (TS 33.501 Annex C)")
    p.add_argument("--profile", required=True, choices=("null", "A", "B"))
    p.add_argument("--supi", required=True, help="imsi-DIGITS")
    p.add_argument("--hn-pub", help="home network public key, hex (Profile A: 32 bytes, B: P-256)")
    p.add_argument("--hn-key-id", default="0", help="home network public key id, 0 … 255")
    p.add_argument("--mnc-length", default="2", choices=("2", "3"), help="digits of the MNC")
    p.add_argument("--routing-indicator", default="0", help="1 to 4 digits (default 0)")
    p.add_argument("--eph-priv", help="ephemeral private key, hex (conformance data only)")
    add_json_flag(p)
    p.set_defaults(func=_suci)

    p = verbs.add_parser("suci-deconceal", help="the SUPI inside a SUCI (home network side)")
    p.add_argument("--hn-priv", help="home network private key, 32 bytes hex")
    p.add_argument("--suci", required=True, help="suci-0-MCC-MNC-RI-SCHEME-KEYID-OUTPUT")
    add_json_flag(p)
    p.set_defaults(func=_suci_deconceal)

    p = verbs.add_parser("bench", help="device-side AKA latency and HSS vector throughput")
    p.add_argument("--subscribers", type=int, default=10_000, help="distinct HSS subscribers")
    p.add_argument(
        "--kernel",
        choices=("auto", "python", "native"),
        default="auto",
        help="Milenage kernel: native C (OpenSSL AES) when built, else pure Python",
    )
    add_json_flag(p)
    p.set_defaults(func=_bench)
