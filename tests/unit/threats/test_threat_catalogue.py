"""The threat catalogue (threats/catalogue.py) against TR 33.812 §7.1.2: all 16 threats,
their likelihood, impact and risk exactly as TR 33.812 gives them, and every counter-measure
number it lists. The expectations are written out here. Optional cross-check: given a
plain-text copy of TR 33.812 (``$TRELAB_TR33812_TEXT``; the repository does not ship the
document), the expectations are also re-read from it, so a transcription error in either place
fails; without it those two tests are skipped and say so."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from threats.catalogue import ALTERNATIVE_1, ALTERNATIVE_3A, THREATS, risk_category, threat
from threats.checks import CHECKS

# id: (likelihood, impact, risk, category in the analysis, category in the summary table,
#      counter-measure numbers)
TR33812 = {
    "1": (3, 3, (9,), "critical", "critical", "1 2 3 4 5"),
    "2": (4, 3, (12,), "critical", "critical", "1 2 3 4 5 6 7"),
    "3": (3, 3, (9,), "critical", "critical", "1 2 3 4 5 6 7"),
    "4": (3, 3, (9,), "critical", "major", "1 2 3 4 5"),  # §7.1.2.1.2 summary table says major
    "5": (2, 2, (4, 6), "major", "major", "1 2 3 4 5 6"),
    "6": (2, 2, (4, 6), "major", "major", "1 2 3 4 5"),
    "7": (2, 3, (6,), "major", "major", "1 2 3 4 5 6 7 8 9 10 11"),
    "8": (3, 3, (9,), "critical", "critical", "1 2 3 4 5 6 7 8 9"),
    "9": (2, 2, (4,), "major", "major", "1 2 3 4 5"),
    "10": (3, 3, (9,), "critical", "critical", "1 2 3 4 5 6 7 8 9 10 11 12"),
    "11": (3, 3, (9,), "critical", "critical", "1"),
    "12": (3, 3, (9,), "critical", "critical", "1 2"),
    "3a-1": (1, 2, (2,), "minor", "minor", "6"),
    "3a-2": (1, 3, (3,), "minor", "minor", "8 9 10 11"),
    "3a-3": (1, 1, (1,), "minor", "minor", "8"),
    "3a-4": (1, 2, (2,), "minor", "minor", "7 8 9"),
}


def test_all_sixteen_threats_in_document_order() -> None:
    assert [t.id for t in THREATS] == list(TR33812)
    assert [t.section for t in THREATS] == [ALTERNATIVE_1] * 12 + [ALTERNATIVE_3A] * 4
    assert {t.alternative for t in THREATS} == {"1", "3a"}


@pytest.mark.parametrize("threat_id", list(TR33812))
def test_risk_levels_exactly_as_in_tr_33_812(threat_id: str) -> None:
    likelihood, impact, risk, category, summary, measures = TR33812[threat_id]
    t = threat(threat_id)
    assert (t.likelihood, t.impact, t.risk) == (likelihood, impact, risk)
    assert (t.risk_category, t.summary_risk) == (category, summary)
    assert [m.number for m in t.measures] == measures.split()
    # risk = impact × likelihood (§7.1.1.1.3); "4 or 6" is TR 33.812's impact 2-or-3
    assert t.risk[0] == t.likelihood * t.impact
    assert all(risk_category(r) == t.risk_category for r in t.risk)
    assert t.title and all(m.summary for m in t.measures)
    assert t.id in CHECKS  # every threat has a check


def test_categories_and_text() -> None:
    assert [risk_category(r) for r in (1, 2, 3, 4, 6, 8, 9, 12)] == (
        ["minor"] * 3 + ["major"] * 3 + ["critical"] * 2
    )
    assert threat("5").risk_text == "4 or 6 (major)"
    assert threat("10").measure("8").kind == "void"
    assert threat("3a-1").measure("6").kind == "organisational"
    assert threat("4").measure("1").ffs and threat("10").measure("11").ffs
    with pytest.raises(KeyError):
        threat("13")
    with pytest.raises(KeyError):
        threat("1").measure("6")


TEXT_ENV = "TRELAB_TR33812_TEXT"
NO_TEXT = f"optional cross-check: set {TEXT_ENV} to a plain-text copy of TR 33.812 to run it"


def _document_text() -> str | None:
    candidate = os.environ.get(TEXT_ENV, "")
    if not candidate:
        return None
    text = Path(candidate).read_text(errors="replace")
    assert "Threat #1" in text and "Alternative 3a" in text, f"{candidate}: not TR 33.812 text"
    return text


def _blocks(text: str) -> dict[str, str]:
    """Each 'Threat #n' analysis block of §7.1.2.1 and §7.1.2.3.1, keyed like the catalogue."""
    alt1 = text[text.index("\n7.1.2.1.3\n") : text.index("\n7.1.2.2\n")]
    alt3a = text[text.index("\n7.1.2.3.1.3\n") : text.index("\n7.2\nSecurity comparison")]
    out: dict[str, str] = {}
    for prefix, section in (("", alt1), ("3a-", alt3a)):
        parts = re.split(r"\nThreat #(\d+)\s*\n", "\n" + section)
        for number, body in zip(parts[1::2], parts[2::2], strict=True):
            out[prefix + number] = body
    return out


def test_catalogue_matches_the_document() -> None:
    text = _document_text()
    if text is None:
        pytest.skip(NO_TEXT)
    blocks = _blocks(text)
    assert set(blocks) == set(TR33812)
    for threat_id, body in blocks.items():
        t = threat(threat_id)
        likelihood = re.search(r"Likelihood:\s*(\d)", body)
        impact = re.search(r"Impact:\s*(\d)", body)
        risk = re.search(r"Risk Level:\s*([\d or]+?)\s*\((\w+)\)", body)
        assert likelihood and impact and risk, threat_id
        assert int(likelihood.group(1)) == t.likelihood, threat_id
        assert int(impact.group(1)) == t.impact, threat_id
        assert tuple(int(r) for r in risk.group(1).split(" or ")) == t.risk, threat_id
        assert risk.group(2).lower() == t.risk_category, threat_id
        numbers = re.findall(r"^\s*(\d+)\.\s", body.split("ounter", 1)[1], re.MULTILINE)
        assert numbers == [m.number for m in t.measures], threat_id


def test_summary_tables_match_the_document() -> None:
    text = _document_text()
    if text is None:
        pytest.skip(NO_TEXT)
    for start, end, prefix in (
        ("7.1.2.1.2", "7.1.2.1.3", ""),
        ("7.1.2.3.1.2", "7.1.2.3.1.3", "3a-"),
    ):
        table = text[text.index(f"\n{start}\n") : text.index(f"\n{end}\n")]
        rows = re.findall(r"\n\t(\d+)\n\t(.+?)\n\t(minor|major|critical)", table)
        assert [prefix + n for n, _, _ in rows] == [
            i for i in TR33812 if i.startswith(prefix or "") and (prefix or "-" not in i)
        ]
        for number, _, category in rows:
            assert threat(prefix + number).summary_risk == category
