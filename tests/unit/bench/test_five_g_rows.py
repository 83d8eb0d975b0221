"""The ``aka-5g`` and ``suci`` rows of the software TRE run the real derivations and SUCIs the
home network opens (the rows' bodies, run once here; timing is bench/'s business)."""

from __future__ import annotations

import pytest

from aka.hss import Hss, Subscriber
from aka.keyholder import SoftwareAes
from aka.milenage import Milenage
from aka.sqn import SqnState
from aka.suci import Profile, SoftwareAgreement, Suci, deconceal, new_home_key
from aka.usim import AkaMacFailure, usim_authenticate
from bench.tres import five_g
from bench.tres.software import SoftwareTre
from trelab.errors import LocalProtocolError


def test_software_rows_are_there_and_run() -> None:
    tre = SoftwareTre("python", subscribers=10)
    cases = {c.operation: c for c in tre.cases(quick=True)}
    assert {"aka-milenage", "aka-5g", "suci", "suci (profile A)"} <= set(cases)
    assert "K_SEAF" in cases["aka-5g"].detail and "P-256" in cases["suci"].detail
    for name in ("aka-5g", "suci", "suci (profile A)"):
        cases[name].body(2)


def test_me_5g_gives_res_star_and_refuses_a_failed_aka() -> None:
    k, opc = bytes(range(16)), bytes(range(16, 32))
    hss = Hss(lambda n: bytes(n))
    hss.add(Subscriber("001010000000001", Milenage(SoftwareAes(k), opc)))
    (vector,) = hss.generate_vectors("001010000000001")
    result, _ = usim_authenticate(
        Milenage(SoftwareAes(k), opc), SqnState(), vector.rand, vector.autn
    )
    assert len(five_g.me_5g(result, vector, "row")) == 16
    with pytest.raises(LocalProtocolError, match="mac_failure"):
        five_g.me_5g(AkaMacFailure(), vector, "row")


@pytest.mark.parametrize("profile", [Profile.A, Profile.B])
def test_suci_once_opens_at_home(profile: Profile) -> None:
    keys = five_g.HomeKeys()
    private, public = new_home_key(profile)
    keys.public[profile] = public
    text = five_g.suci_once(keys, profile, SoftwareAgreement())
    assert deconceal(Suci.parse(text), private) == five_g.BENCH_SUPI


def test_card_rows_add_aka_5g_and_suci_only_when_the_card_computes_sucis() -> None:
    """The UICC rows' client cases on the emulated USIM in process (the PC/SC and modem rows
    add only their raw transport to these)."""
    from bench.tres.uicc import _UsimTre
    from firmware_stubs.usim.engine import UsimEngine
    from firmware_stubs.usim.profile import DEFAULT_PROFILE, parse_profile
    from uicc.links.inprocess import InProcessLink
    from uicc.usim import UsimClient

    _, public = new_home_key(Profile.B)
    with_suci = dict(DEFAULT_PROFILE) | {
        "suci": {
            "schemes": ["B"],
            "home_network_keys": [{"id": 7, "profile": "B", "public": public.hex()}],
        }
    }
    without_suci = {k: v for k, v in DEFAULT_PROFILE.items() if k != "suci"}
    for doc, has_suci in ((without_suci, False), (with_suci, True)):
        profile = parse_profile(doc)
        tre = _UsimTre("usim (in process)", profile, quick=True)
        tre._prepare(UsimClient(tre._timed_link(InProcessLink(UsimEngine(profile)))))
        cases = {c.operation: c for c in tre._client_cases()}
        assert cases["aka-milenage"].observe is not None  # APDU exchanges timed at the link
        assert ("suci" in cases) is has_suci and "aka-5g" in cases
        cases["aka-5g"].body(2)
        if has_suci:
            cases["suci"].body(2)
        assert "suci" in tre._base_environment()
