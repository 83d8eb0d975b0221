"""Pure. The threats of TR 33.812 §7.1.2 as data: the 12 threats to the non-UICC alternative
(§7.1.2.1, "Alternative 1") and the 4 of Alternative 3a, Ki transfer (§7.1.2.3.1), each with
TR 33.812's likelihood, impact, risk level and counter-measures by their numbers in TR 33.812.

Texts are our short summaries; only short phrases are quoted from TR 33.812. Where TR 33.812 is
inconsistent it is recorded as it stands: threat 4's summary table says "major" while its
analysis gives "Risk Level: 9 (critical)" (:attr:`Threat.summary_risk` vs
:attr:`Threat.risk_category`). Risk = impact × likelihood (§7.1.1.1.3); 1–3 minor, 4–8 major,
9–12 critical (§7.1.1.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALTERNATIVE_1",
    "ALTERNATIVE_3A",
    "THREATS",
    "CounterMeasure",
    "MeasureKind",
    "RiskCategory",
    "Threat",
    "risk_category",
    "threat",
]

RiskCategory = Literal["minor", "major", "critical"]
#: technical: something a TRE, the protocol or the network enforces (checked by attack);
#: organisational: contracts, audits, procedures, law; specification: "should be specified";
#: void: TR 33.812 keeps the number but the item is void.
MeasureKind = Literal["technical", "organisational", "specification", "void"]

ALTERNATIVE_1 = "7.1.2.1"
ALTERNATIVE_3A = "7.1.2.3.1"


def risk_category(risk: int) -> RiskCategory:
    """§7.1.1.2: 1, 2, 3 minor; 4, 6, 8 major; 9, 12 critical."""
    if risk >= 9:
        return "critical"
    return "major" if risk >= 4 else "minor"


@dataclass(frozen=True)
class CounterMeasure:
    """One counter-measure under its number in TR 33.812. ``ffs`` holds TR 33.812's own words
    when it marks the item (or how to do it) "for further study"."""

    number: str
    summary: str
    kind: MeasureKind = "technical"
    ffs: str = ""


@dataclass(frozen=True)
class Threat:
    """One threat as TR 33.812 assesses it (for an unprotected system)."""

    id: str
    section: str
    title: str
    likelihood: int
    impact: int
    risk: tuple[int, ...]
    risk_category: RiskCategory
    summary_risk: RiskCategory
    measures: tuple[CounterMeasure, ...]
    impact_note: str = ""

    @property
    def alternative(self) -> str:
        return "3a" if self.section == ALTERNATIVE_3A else "1"

    def measure(self, number: str) -> CounterMeasure:
        for m in self.measures:
            if m.number == number:
                return m
        raise KeyError(f"threat {self.id} has no counter-measure {number}")

    @property
    def risk_text(self) -> str:
        """As TR 33.812 writes it: ``9 (critical)``, ``4 or 6 (major)``."""
        return f"{' or '.join(map(str, self.risk))} ({self.risk_category})"


_T = CounterMeasure
_FILTER = "network filtering of the services a MID reaches reduces incentive and impact"
_ONLY_TRE = (
    "only a TRE assures provisioning, storage and use of MIDs: nothing leaks from the channel"
)
_PROTOCOL = (
    "provisioning protocol: mutual authentication, integrity, confidentiality, freshness;"
    " resistant to replay, MITM, masquerading"
)
_REMOTE_FFS = "Editor's Note: methods for remotely validating a TRE are FFS"

THREATS: tuple[Threat, ...] = (
    Threat(
        "1",
        ALTERNATIVE_1,
        "emulating a legitimate M2ME to obtain illicit downloads of MIDs",
        3,
        3,
        (9,),
        "critical",
        "critical",
        (
            _T("1", "a TRE is the root of trust for secure storage and execution of MIDs"),
            _T("2", "a TRE is a logically separate area with hardware support"),
            _T("3", "each TRE has a unique, authenticable and revocable identity (X.509)"),
            _T(
                "4",
                "the DPF queries the M2ME's system state (via the PVA) before provisioning",
                ffs=_REMOTE_FFS,
            ),
            _T("5", _FILTER),
        ),
    ),
    Threat(
        "2",
        ALTERNATIVE_1,
        "attacking the MID provisioning process to obtain MIDs",
        4,
        3,
        (12,),
        "critical",
        "critical",
        (
            _T("1", "a secure provisioning process and protocol, in-band"),
            _T("2", "a secure protocol transports all MID components from the DPF"),
            _T("3", _ONLY_TRE),
            _T("4", _PROTOCOL),
            _T("5", "cryptographic means prevent interrupting or hijacking a session"),
            _T("6", "a MID download only after the registration phase"),
            _T("7", _FILTER),
        ),
    ),
    Threat(
        "3",
        ALTERNATIVE_1,
        "malicious software in the M2ME or host terminal obtains MIDs",
        3,
        3,
        (9,),
        "critical",
        "critical",
        (
            _T("1", "a TRE is secure enough to store and execute AKA functions as UICCs do"),
            _T(
                "2",
                "a MID is locked to its M2ME/TRE and cannot be replaced by an unauthorised MID",
                ffs="applicability of 3GPP ME personalisation specifications is FFS",
            ),
            _T("3", "a TRE assures the lifecycle stages of multiple MIDs"),
            _T("4", _ONLY_TRE),
            _T("5", _PROTOCOL + "; time-stamping"),
            _T("6", _FILTER),
            _T("7", "the PVA validates authenticity and integrity of the M2ME and the TRE"),
        ),
    ),
    Threat(
        "4",
        ALTERNATIVE_1,
        "logical or physical attacks against a TRE to obtain MIDs or keys to clone them",
        3,
        3,
        (9,),
        "critical",
        "major",
        (
            _T(
                "1",
                "a proven degree of protection against physical, logical and side-channel attacks",
                ffs="Editor's note: specifying the 'proven degree of protection' is FFS",
            ),
            _T("2", "logical interfaces usable only under control of an authorised entity"),
            _T("3", "using the interfaces does not compromise MIDs or the TRE"),
            _T("4", "a TRE supports and enforces its own security policy"),
            _T("5", _FILTER),
        ),
    ),
    Threat(
        "5",
        ALTERNATIVE_1,
        "replacing a TRE in an M2ME by another TRE or an emulation",
        2,
        2,
        (4, 6),
        "major",
        "major",
        (
            _T(
                "1",
                "security-critical elements pre-provisioned in a secure, out-of-band facility",
                kind="organisational",
            ),
            _T("2", "an embedded, unique TRE identity, authenticable to the issuing authorities"),
            _T("3", "MIDs and provisioning messages are bound to the identity of the TRE"),
            _T("4", "MIDs reach only the correct TRE: registration and provisioning are bound"),
            _T("5", "the DPF queries the M2ME's system state before MIDs are stored"),
            _T(
                "6",
                "the PVA validates authenticity and integrity of the M2ME and the TRE",
                ffs=_REMOTE_FFS,
            ),
        ),
        impact_note="or possibly 3, if the detailed method of attack is widely publicised",
    ),
    Threat(
        "6",
        ALTERNATIVE_1,
        "modifying the functions of a TRE (DoS, or control of its behaviour)",
        2,
        2,
        (4, 6),
        "major",
        "major",
        (
            _T("1", "logical interfaces usable only under control of an authorised entity"),
            _T("2", "using the interfaces does not compromise MIDs or the TRE"),
            _T("3", "a TRE supports and enforces its own security controls"),
            _T(
                "4",
                "access-control firmware changes only over a secure channel, by an authorised"
                " remote management system",
            ),
            _T("5", "the TRE detects tampering itself and enters an untrusted state"),
        ),
        impact_note="or possibly 3, if the detailed method of attack is widely publicised",
    ),
    Threat(
        "7",
        ALTERNATIVE_1,
        "attacking the permissions of an installed MID (service, data theft or DoS)",
        2,
        3,
        (6,),
        "major",
        "major",
        (
            _T("1", "lifecycle transitions only as the authorising stakeholder (SHO) instructs"),
            _T("2", "user access control for MIDs of an SHO the user subscribes to"),
            _T("3", "the TRE stores and enforces MID security controls the user cannot override"),
            _T("4", "the TRE enforces MID management controls specified by the user"),
            _T("5", "the SHO can validate the integrity of MIDs it owns"),
            _T("6", "a secure discovery service for MID identifiers and lifecycle status"),
            _T("7", "remote upgrade/update of MIDs only after authorisation by the SHO"),
            _T("8", "only a TRE assures provisioning, storage and use of MIDs"),
            _T("9", "the provisioning function also de-provisions and updates MIDs"),
            _T("10", "the M2ME verifies that management instructions come from a valid source"),
            _T("11", "standardised, trusted update protocols (OMA DM, OTA RFM, OTA RAM)"),
        ),
        impact_note="if the attack becomes distributed or publicised, or the data is sensitive",
    ),
    Threat(
        "8",
        ALTERNATIVE_1,
        "another MID or malicious software extracts information from or corrupts a MID",
        3,
        3,
        (9,),
        "critical",
        "critical",
        (
            _T("1", "logical isolation between the MIDs of different stakeholders"),
            _T(
                "2",
                "MIDs share functions only if their controls permit, same stakeholder, activated",
            ),
            _T("3", "the TRE supports and enforces the security controls of MIDs"),
            _T("4", "the TRE enforces MID management controls specified by the user"),
            _T("5", "interfaces usable without compromising the MIDs or the TRE"),
            _T("6", "the TRE assures the transitions of MIDs through their lifecycle"),
            _T("7", "the TRE keeps a registry of its MIDs with lifecycle and security status"),
            _T(
                "8",
                "MID code integrity-checked at boot/reset; anomalies block the MID",
                ffs="re-establishing a blocked MID's service, and file-system checks, are FFS",
            ),
            _T("9", "a secure audit record of the TRE's transactions"),
        ),
    ),
    Threat(
        "9",
        ALTERNATIVE_1,
        "obtaining sensitive information by monitoring TRE–M2ME interactions",
        2,
        2,
        (4,),
        "major",
        "major",
        (
            _T("1", "a TRE does not reveal its authorisation values to other functions"),
            _T("2", "interactions between a TRE and trusted components over secure channels"),
            _T(
                "3",
                "operations needing secure communication not in untrusted components",
                kind="organisational",
            ),
            _T("4", _FILTER),
            _T("5", "interactions with untrusted components carry no sensitive information"),
        ),
    ),
    Threat(
        "10",
        ALTERNATIVE_1,
        "access to TRE or MID functions by masquerading as the legitimate user",
        3,
        3,
        (9,),
        "critical",
        "critical",
        (
            _T("1", "the TRE authenticates users and controls access, where relevant"),
            _T("2", "the TRE supports user authentication services where MIDs require it"),
            _T("3", "a MID can invoke its own user authentication (password, certificate)"),
            _T(
                "4",
                "monitoring TRE–user interactions prohibited unless the user permits",
                ffs="Editor's Note: counter-measures 4 and 5 ... FFS",
            ),
            _T(
                "5",
                "credential transfer to the TRE protected from eavesdropping and replay",
                ffs="Editor's Note: counter-measures 4 and 5 ... FFS",
            ),
            _T("6", "the TRE blocks itself or a MID after n consecutive incorrect entries"),
            _T("7", "no authentication attempts from a remote user by default"),
            _T("8", "void", kind="void"),
            _T("9", "a tamper-protected monotonic timer resets authentication after inactivity"),
            _T(
                "10",
                "the TRE forces user authentication on boot or on first use",
                ffs="which of the alternatives ... should be supported is FFS",
            ),
            _T(
                "11",
                "the user cannot reduce user-authentication protection below the global level",
                ffs="the above counter-measure is FFS",
            ),
            _T("12", "only a TRE manages the user's access to MID functions"),
        ),
        impact_note="if publicised",
    ),
    Threat(
        "11",
        ALTERNATIVE_1,
        "users lose network access or data through malfunction or erasure of MIDs or a TRE",
        3,
        3,
        (9,),
        "critical",
        "critical",
        (
            _T(
                "1",
                "an authorised entity resets MID management to factory settings; access is"
                " re-established",
                ffs="a secure backup service for Ki is regarded as impractical",
            ),
        ),
    ),
    Threat(
        "12",
        ALTERNATIVE_1,
        "registering with a stolen or not-yet-registered identity to obtain MIDs",
        3,
        3,
        (9,),
        "critical",
        "critical",
        (
            _T(
                "1",
                "the registration procedure must be trust-worthy (how: out of scope)",
                kind="organisational",
            ),
            _T("2", "the provisioning process is securely bound to the registration"),
        ),
    ),
    Threat(
        "3a-1",
        ALTERNATIVE_3A,
        "the original MNO refuses to assist in transferring the subscription",
        1,
        2,
        (2,),
        "minor",
        "minor",
        (_T("6", "a tight contract forces the current MNO to cooperate", kind="organisational"),),
    ),
    Threat(
        "3a-2",
        ALTERNATIVE_3A,
        "the original MNO attacks subscribers after their transfer (it still knows K)",
        1,
        3,
        (3,),
        "minor",
        "minor",
        (
            _T(
                "8",
                "the new MNO changes the subscriber key by OTA",
                ffs="Editor's note: OTA download of subscriber keys ... not possible with"
                " today's UICCs",
            ),
            _T("9", "the new MNO later changes the IMSI by OTA (migration IMSIs are dummies)"),
            _T("10", "the new MNO runs fraud detection on the transferred users' traffic"),
            _T(
                "11",
                "contracts forbid keeping old credentials; liability, inspections",
                kind="organisational",
            ),
        ),
    ),
    Threat(
        "3a-3",
        ALTERNATIVE_3A,
        "the new MNO decrypts subscribers' traffic recorded before the transfer",
        1,
        1,
        (1,),
        "minor",
        "minor",
        (
            _T(
                "8",
                "recording competitors' traffic forbidden by law and by contract",
                kind="organisational",
            ),
        ),
    ),
    Threat(
        "3a-4",
        ALTERNATIVE_3A,
        "users lose service through a malfunction while being transferred",
        1,
        2,
        (2,),
        "minor",
        "minor",
        (
            _T(
                "7",
                "well-defined, secure administrative transfer procedures",
                kind="organisational",
            ),
            _T(
                "8",
                "a common M2M Milenage profile in all M2M USIMs (else old MNO hands over its"
                " parameters)",
                kind="specification",
            ),
            _T(
                "9",
                "specify which USIM parameters change at transfer; set EF access conditions",
                kind="specification",
            ),
        ),
    ),
)


def threat(threat_id: str) -> Threat:
    """The catalogue entry for ``threat_id`` (``"1"`` … ``"12"``, ``"3a-1"`` … ``"3a-4"``).

    Raises:
        KeyError: no such threat in TR 33.812.
    """
    for t in THREATS:
        if t.id == threat_id:
            return t
    raise KeyError(
        f"no threat {threat_id!r} in TR 33.812 (known: {', '.join(t.id for t in THREATS)})"
    )
