"""Edge: ``trelab aka milenage | tuak | hmac-sha256 | bench`` — the AKA core from the command
line."""

from __future__ import annotations

import argparse
from typing import Any

from aka.autn import build_autn
from aka.gsm import c2_sres, c3_kc
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage, opc_from_op
from host.cli.output import Outcome, add_json_flag
from trelab.errors import BadInput
from trelab.hexargs import parse_hex

__all__ = ["register"]


def _lines(data: dict[str, Any]) -> str:
    width = max(len(k) for k in data)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in data.items())


def _milenage(args: argparse.Namespace) -> Outcome:
    k = parse_hex("--k", args.k, length=16)
    rand = parse_hex("--rand", args.rand, length=16)
    sqn = parse_hex("--sqn", args.sqn, length=6)
    amf = parse_hex("--amf", args.amf, length=2)
    cipher = SoftwareAes(k)
    if args.op is not None:
        opc = opc_from_op(cipher, parse_hex("--op", args.op, length=16))
    else:
        opc = parse_hex("--opc", args.opc, length=16)
    out = Milenage(cipher, opc).all_outputs(rand, sqn, amf)
    data = {"opc": opc.hex()} | {name: value.hex() for name, value in out.items()}
    data["autn"] = build_autn(sqn, out["f5"], amf, out["f1"]).hex()
    data["sres"] = c2_sres(out["f2"]).hex()
    data["kc"] = c3_kc(out["f3"], out["f4"]).hex()
    return Outcome(data=data, text=_lines(data))


def _tuak(args: argparse.Namespace) -> Outcome:
    from aka.tuak import SoftwareKeccak, Tuak, topc_from_top

    k = parse_hex("--k", args.k, length=(16, 32))
    rand = parse_hex("--rand", args.rand, length=16)
    sqn = parse_hex("--sqn", args.sqn, length=6)
    amf = parse_hex("--amf", args.amf, length=2)
    holder = SoftwareKeccak(k)
    if args.top is not None:
        topc = topc_from_top(holder, parse_hex("--top", args.top, length=32), args.iterations)
    else:
        topc = parse_hex("--topc", args.topc, length=32)
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
    return Outcome(data=data, text=_lines(data))


def _hmac_sha256(args: argparse.Namespace) -> Outcome:
    from aka.hmac_aka import HmacAka, SoftwareHmac, opc_from_op

    k = parse_hex("--k", args.k, length=(16, 32))
    rand = parse_hex("--rand", args.rand, length=16)
    sqn = parse_hex("--sqn", args.sqn, length=6)
    amf = parse_hex("--amf", args.amf, length=2)
    holder = SoftwareHmac(k)
    if args.op is not None:
        opc = opc_from_op(holder, parse_hex("--op", args.op, length=32))
    else:
        opc = parse_hex("--opc", args.opc, length=32)
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
    return Outcome(data=data, text=_lines(data))


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
        "aka", help="Milenage, TUAK (TS 35.206, TS 35.231) and the HMAC-SHA-256 set"
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    p = verbs.add_parser("milenage", help="all Milenage outputs for one input (TS 35.206)")
    p.add_argument("--k", required=True, help="K, 16 bytes hex")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--op", help="OP, 16 bytes hex (OPc is derived)")
    group.add_argument("--opc", help="OPc, 16 bytes hex")
    for name, size in (("rand", 16), ("sqn", 6), ("amf", 2)):
        p.add_argument(f"--{name}", required=True, help=f"{name.upper()}, {size} bytes hex")
    add_json_flag(p)
    p.set_defaults(func=_milenage)

    p = verbs.add_parser("tuak", help="all TUAK outputs for one input (TS 35.231)")
    p.add_argument("--k", required=True, help="K, 16 or 32 bytes hex")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--top", help="TOP, 32 bytes hex (TOPc is derived)")
    group.add_argument("--topc", help="TOPc, 32 bytes hex")
    for name, size in (("rand", 16), ("sqn", 6), ("amf", 2)):
        p.add_argument(f"--{name}", required=True, help=f"{name.upper()}, {size} bytes hex")
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
    p.add_argument("--k", required=True, help="K, 16 or 32 bytes hex")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--op", help="OP, 32 bytes hex (OPc is derived)")
    group.add_argument("--opc", help="OPc, 32 bytes hex")
    for name, size in (("rand", 16), ("sqn", 6), ("amf", 2)):
        p.add_argument(f"--{name}", required=True, help=f"{name.upper()}, {size} bytes hex")
    p.add_argument("--res-bits", type=int, default=64, choices=(32, 64, 128))
    add_json_flag(p)
    p.set_defaults(func=_hmac_sha256)

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
