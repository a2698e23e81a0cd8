"""`yurt-iot validate`: manifests checked locally with the API server's words, before `kubectl apply`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.kube_helpers import kubectl, new_namespace
from yurt_iot.testing.controlplane import ControlPlane

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
THERMOSTAT = (EXAMPLES / "iot/modbus-thermostat.yaml").read_text()
ADMIN_STATE_ERROR = 'spec.adminState: Unsupported value: "OPEN": supported values: "LOCKED", "UNLOCKED"'


def validate(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["yurt-iot", "validate", *map(str, paths)], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_examples_are_valid() -> None:
    result = validate(EXAMPLES)
    assert result.returncode == 0, result.stdout
    assert "error" not in result.stdout and "warning" not in result.stdout
    assert " 0 errors" in result.stderr


def test_errors_name_file_document_object_and_field(tmp_path: Path) -> None:
    broken = THERMOSTAT.replace("adminState: UNLOCKED\n  operatingState", "adminState: OPEN\n  operatingState")
    broken = broken.replace("interval: 1s", "interval: soon").replace("  notify: true\n", "  colour: red\n")
    (tmp_path / "broken.yaml").write_text(broken)
    (tmp_path / "other.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n---\n[1, 2]\n")
    (tmp_path / "garbled.yml").write_text("kind: Device\n  metadata: {\n")

    result = validate(tmp_path)

    assert result.returncode == 1
    lines = result.stdout.splitlines()
    device = f"error: {tmp_path / 'broken.yaml'}:2 Device/thermostat-1"
    assert f"{device}: {ADMIN_STATE_ERROR}" in lines
    assert f"{device}: spec.notify: Required value" in lines
    assert f'{device}: spec.colour: unknown field "spec.colour"' in lines
    assert any(line.startswith(f'{device}: spec.autoEvents[0].interval: Invalid value: "soon"') for line in lines)
    assert f"error: {tmp_path / 'other.yaml'}:0 ConfigMap/settings: no kind 'ConfigMap' in 'v1'" in result.stdout
    assert f"error: {tmp_path / 'other.yaml'}:1: a manifest must be an object, not list" in lines
    assert f"error: {tmp_path / 'garbled.yml'}: mapping values are not allowed here" in result.stdout
    assert "7 errors" in result.stderr


def test_references_missing_from_the_files_are_warnings(tmp_path: Path) -> None:
    device_only = THERMOSTAT.split("---\n")[-1].replace("profileName: thermostat", "profileName: boiler")
    (tmp_path / "device.yaml").write_text(device_only)

    result = validate(tmp_path / "device.yaml")

    assert result.returncode == 0, result.stdout
    where = f"warning: {tmp_path / 'device.yaml'}:0 Device/thermostat-1"
    assert f"{where}: spec.profileName: DeviceProfile 'boiler' is not in these files" in result.stdout
    assert f"{where}: spec.serviceName: DeviceService 'device-modbus' is not in these files" in result.stdout


def test_a_missing_path_is_refused(tmp_path: Path) -> None:
    result = validate(tmp_path / "nope.yaml")
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr


def test_the_api_server_says_the_same(control_plane: ControlPlane, tmp_path: Path) -> None:
    broken = THERMOSTAT.replace("adminState: UNLOCKED\n  operatingState", "adminState: OPEN\n  operatingState")
    (tmp_path / "broken.yaml").write_text(broken)
    namespace = new_namespace(control_plane, "validate")

    server = kubectl(control_plane, "apply", "-n", namespace, "--dry-run=server", "-f", str(tmp_path / "broken.yaml"))
    local = validate(tmp_path)

    assert server.returncode != 0 and local.returncode == 1
    assert ADMIN_STATE_ERROR in server.stderr
    assert ADMIN_STATE_ERROR in local.stdout
