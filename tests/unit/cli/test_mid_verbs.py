"""The MID lifecycle verbs have one home, ``trelab mid``: the owner's order through the network
by default, a direct TPM write with ``--local``; ``trelab tpm mid activate|suspend|delete``
still parse as unlisted spellings of ``--local``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from host.cli import build_parser, main
from host.cli.mid_cmd import _transition
from host.cli.tpm_cmd import _local_transition

NO_TPM = "swtpm:host=127.0.0.1,port=1"  # nothing listens: the verb must stop at the TPM


@pytest.mark.parametrize("verb", ["activate", "suspend", "delete"])
def test_one_home_and_the_earlier_spelling(verb: str) -> None:
    parser = build_parser()
    home = parser.parse_args(["mid", verb, "--mid", "m1", "--local"])
    assert home.func is _transition and home.local and home.mid == "m1"
    assert not parser.parse_args(["mid", verb, "--mid", "m1"]).local
    earlier = parser.parse_args(["tpm", "mid", verb, "--mid", "m1"])
    assert earlier.func is _local_transition and earlier.mid == "m1"


def test_help_lists_each_verb_once(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["tpm", "mid", "--help"])
    assert done.value.code == 0
    listed = capsys.readouterr().out
    for verb in ("activate", "suspend", "delete"):
        assert f"    {verb} " not in listed
    assert "trelab mid activate|suspend|delete --local" in " ".join(listed.split())
    with pytest.raises(SystemExit):
        main(["mid", "suspend", "--help"])
    helped = capsys.readouterr().out
    assert "--local" in helped and "owning SHO" in helped and "imported locally" in helped


def test_local_writes_the_tpm_without_the_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--tpm", NO_TPM, "--registry", str(tmp_path / "mids.json"), "--json"]
    owner = main(["mid", "suspend", "--mid", "m1", *where])  # the agent's own MID list first
    assert (
        owner == 2 and "agent has no MID" in json.loads(capsys.readouterr().out)["error"]["message"]
    )
    for argv in (
        ["mid", "suspend", "--mid", "m1", "--local"],
        ["tpm", "mid", "suspend", "--mid", "m1"],
    ):
        code = main([*argv, *where])
        error = json.loads(capsys.readouterr().out)["error"]
        assert code == 3 and "cannot reach swtpm" in error["message"]
