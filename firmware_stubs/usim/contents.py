"""Pure. What a freshly personalised card holds in its files: the declarations' defaults of
:mod:`uicc.fs`, overwritten where the profile says more (ICCID, IMSI, MNC length, SPN, MSISDN,
the IMS identities of TS 23.003 §13, the SUCI settings) and the service tables derived from what
the card declares and implements, so EF.UST and EF.IST never claim what the card cannot do.
"""

from __future__ import annotations

from uicc import fs
from uicc.fs import LinearFixedEF, TransparentEF

from .profile import CardProfile, SuciSettings
from .state import FileContent

__all__ = [
    "COMMAND_SERVICES",
    "ims_domain",
    "initial_files",
    "ist_services",
    "suci_calc_info_value",
    "ust_services",
]

# EF.UST services the card offers by its commands rather than by files (TS 31.102 §4.2.8):
# 33 (shall be set), 38 GSM security context (AUTHENTICATE, P2 = 80), 125 SUCI calculation by
# the USIM (GET IDENTITY, §7.5).
COMMAND_SERVICES = frozenset({33, 38})
_SUCI_PRIVACY, _SUCI_BY_USIM = 124, 125


def ust_services(profile: CardProfile) -> tuple[int, ...]:
    """EF.UST of this card: the services its declared files serve and its commands implement;
    124 (subscription identifier privacy) only with home network keys personalised, 125 (SUCI
    calculation by the USIM) only when the USIM is the one that conceals."""
    services = set(fs.declared_services(fs.ADF_USIM)) | COMMAND_SERVICES
    services -= {_SUCI_PRIVACY, _SUCI_BY_USIM}
    if profile.suci is not None:
        services.add(_SUCI_PRIVACY)
        if profile.suci.calculation == "usim":
            services.add(_SUCI_BY_USIM)
    return tuple(sorted(services))


def ist_services() -> tuple[int, ...]:
    """EF.IST (TS 31.103 §4.2.7): the ISIM services its declared files serve."""
    return tuple(sorted(fs.declared_services(fs.ADF_ISIM)))


def suci_calc_info_value(settings: SuciSettings) -> dict[str, object]:
    """The SUCI_Calc_Info value (codec form) for the profile's schemes and keys."""
    keys = settings.home_network_keys
    schemes = [
        {
            "scheme": scheme,
            "key_index": next((i + 1 for i, k in enumerate(keys) if k.profile == scheme), 0),
        }
        for scheme in settings.schemes
    ]
    return {
        "schemes": schemes,
        "keys": [{"id": k.key_id, "public": k.public.hex()} for k in keys],
    }


def ims_domain(imsi: str, mnc_length: int) -> str:
    """Home network domain derived from the IMSI (TS 23.003 §13.2): MNC padded to 3 digits."""
    mcc, mnc = imsi[:3], imsi[3 : 3 + mnc_length]
    return f"ims.mnc{mnc.zfill(3)}.mcc{mcc}.3gppnetwork.org"


def initial_files(profile: CardProfile) -> dict[str, FileContent]:
    """File contents of a freshly personalised card, keyed by file name."""
    out: dict[str, FileContent] = {}
    for ef in fs.all_efs():
        out[ef.name] = ef.initial_records() if isinstance(ef, LinearFixedEF) else ef.initial()

    def put(ef: TransparentEF, value: object) -> None:
        out[ef.name] = ef.codec.encode(value, ef.size)

    def put_records(ef: LinearFixedEF, values: list[object]) -> None:
        records = list(ef.initial_records())
        for index, value in enumerate(values):
            records[index] = ef.codec.encode(value, ef.record_len)
        out[ef.name] = tuple(records)

    put(fs.EF_ICCID, profile.iccid)
    put(fs.EF_IMSI, profile.imsi)
    ad = {"ue_operation_mode": 0, "additional_info": "0000", "mnc_length": profile.mnc_length}
    put(fs.EF_AD, ad)
    put(fs.EF_SPN, {"display_condition": 1, "name": profile.spn})
    put(fs.EF_UST, ust_services(profile))
    put(fs.EF_IST, ist_services())
    # access class 0…9 from the last IMSI digit, the usual allocation (TS 22.011 §4.2)
    put(fs.EF_ACC, (int(profile.imsi[-1]),))
    home = profile.imsi[:3] + profile.imsi[3 : 3 + profile.mnc_length]
    put(fs.EF_EHPLMN, (home,))
    put(fs.EF_HPLMNWACT, ({"plmn": home, "act": ("UTRAN", "E-UTRAN", "NG-RAN", "GSM")},))
    if profile.msisdn is not None:
        put_records(fs.EF_MSISDN, [{"alpha": "", "number": profile.msisdn}])
    put_records(fs.EF_PNN, [{"full_name": profile.spn or "trelab", "short_name": None}])
    put_records(
        fs.EF_OPL,
        [{"plmn": home, "area_min": "0000", "area_max": "fffe", "pnn_record": 1}],
    )
    put_records(
        fs.EF_OPL5G,
        [{"plmn": home, "area_min": "000000", "area_max": "fffffe", "pnn_record": 1}],
    )
    if profile.suci is not None:
        info = suci_calc_info_value(profile.suci)
        put(fs.EF_SUCI_CALC_INFO, info)
        if profile.suci.calculation == "usim":
            put(fs.EF_SUCI_CALC_INFO_USIM, info)
        put(fs.EF_ROUTING_INDICATOR, profile.suci.routing_indicator)
    # ISIM: the identities derived from the IMSI (TS 23.003 §13.3, §13.4B)
    domain = ims_domain(profile.imsi, profile.mnc_length)
    put(fs.EF_IMPI, {"nai": f"{profile.imsi}@{domain}"})
    put(fs.EF_DOMAIN, {"domain": domain})
    impus: list[object] = [f"sip:{profile.imsi}@{domain}"]
    if profile.msisdn is not None and profile.msisdn.startswith("+"):
        impus.append(f"tel:{profile.msisdn}")
    put_records(fs.EF_IMPU, impus)
    put_records(fs.EF_PCSCF, [{"type": "fqdn", "address": f"pcscf.{domain}"}])
    put_records(fs.EF_DIR, [{"aid": app.aid.hex(), "label": app.label} for app in _listed()])
    return out


def _listed() -> list[fs.ADF]:
    return [app for app in fs.APPLICATIONS if app.listed]
