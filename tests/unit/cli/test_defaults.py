"""host.cli.defaults: the one place defaults are resolved — option, then environment, then
the user's directories (or the running lab)."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.cli import defaults


def test_lab_dir_option_then_env_then_user_state_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TRELAB_LAB_DIR", str(tmp_path / "mine"))
    assert defaults.lab_dir() == tmp_path / "mine"
    assert defaults.lab_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("TRELAB_LAB_DIR")
    assert defaults.lab_dir().parts[-2:] == ("trelab", "lab")


def test_registry_follows_the_lab_dir_unless_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("TRELAB_MID_REGISTRY", raising=False)
    monkeypatch.setenv("TRELAB_LAB_DIR", str(tmp_path / "lab"))
    assert defaults.registry_path() == tmp_path / "lab" / "mids.json"
    monkeypatch.setenv("TRELAB_MID_REGISTRY", str(tmp_path / "env.json"))
    assert defaults.registry_path() == tmp_path / "env.json"
    assert defaults.registry_path(tmp_path / "opt.json") == tmp_path / "opt.json"


def test_network_paths_and_device_trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TRELAB_DEVICE_TRUST", raising=False)
    monkeypatch.setenv("TRELAB_NETWORK_DIR", str(tmp_path / "net"))
    assert defaults.network_config() == tmp_path / "net" / "network.json"
    assert defaults.device_trust_path() == tmp_path / "net" / "device-trust.json"
    (tmp_path / "folder").mkdir()
    assert defaults.network_config(tmp_path / "folder") == tmp_path / "folder" / "network.json"
    assert defaults.network_config(tmp_path / "x.toml") == tmp_path / "x.toml"
    monkeypatch.setenv("TRELAB_DEVICE_TRUST", str(tmp_path / "pinned.json"))
    assert defaults.device_trust_path() == tmp_path / "pinned.json"


def test_tcti_option_then_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRELAB_TPM", "device:/dev/tpmrm0")
    assert defaults.tcti() == "device:/dev/tpmrm0"
    assert defaults.tcti("swtpm:port=2321") == "swtpm:port=2321"


def test_a_library_field_is_shown_as_the_option_that_carried_it() -> None:
    import argparse

    from host.cli.output import as_option
    from protocol.errors import BadConfig
    from trelab.errors import BadInput

    raised = BadConfig("1 bytes, expected 16", field="rand")
    assert str(raised) == "rand: 1 bytes, expected 16"  # the library names its field
    shown = as_option(raised, argparse.Namespace(rand="00"))
    assert type(shown) is BadConfig and str(shown) == "--rand: 1 bytes, expected 16"
    other = BadInput("empty", field="pcr_selection")  # no such option here: left as it is
    assert as_option(other, argparse.Namespace(pcrs="x")) is other
