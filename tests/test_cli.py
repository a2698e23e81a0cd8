"""The `yurt-iot` command line."""

from __future__ import annotations

import subprocess
from pathlib import Path

from yurt_iot import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["yurt-iot", *args], capture_output=True, text=True, timeout=60, check=False)


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "version" in result.stdout and "crds" in result.stdout


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"yurt-iot {__version__}"


def test_crds_writes_and_checks_a_directory(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    assert run("crds", "--out", str(out)).returncode == 0
    assert len(list(out.glob("*.yaml"))) == 6
    assert run("crds", "--check", "--out", str(out)).returncode == 0

    devices = out / "iot.openyurt.io_devices.yaml"
    devices.write_text(devices.read_text().replace("shortNames:\n    - dev", "shortNames:\n    - device"))
    (out / "leftover.yaml").write_text("{}\n")
    stale = run("crds", "--check", "--out", str(out))
    assert stale.returncode == 1
    assert "iot.openyurt.io_devices.yaml" in stale.stderr and "leftover.yaml" in stale.stderr

    assert run("crds", "--out", str(out)).returncode == 0
    assert not (out / "leftover.yaml").exists()
    assert run("crds", "--check", "--out", str(out)).returncode == 0
