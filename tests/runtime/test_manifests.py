"""Loading devices and profiles from manifest files, as the standalone gateway does."""

from __future__ import annotations

from pathlib import Path

import pytest

from yurt_iot.runtime.manifests import ManifestError, device_profiles, load_manifests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_examples_pair_each_device_with_its_profile() -> None:
    pairs = device_profiles(load_manifests([EXAMPLES]))
    assert sorted((d.metadata.name, p.metadata.name) for d, p in pairs) == [
        ("mqtt-sensor-1", "mqtt-sensor"), ("opcua-machine-1", "opcua-machine"), ("thermostat-1", "thermostat"),
    ]  # fmt: skip


def test_profile_found_by_its_edge_name_label(tmp_path: Path) -> None:
    text = (EXAMPLES / "iot/modbus-thermostat.yaml").read_text()
    synced = text.replace("  name: thermostat\n", "  name: hangzhou-thermostat\n  labels:\n"
                          "    yurt-iot-dock/edgex-object.name: thermostat\n")  # fmt: skip
    (tmp_path / "m.yaml").write_text(synced)
    [(_device, profile)] = device_profiles(load_manifests([tmp_path]))
    assert profile.metadata.name == "hangzhou-thermostat"


def test_errors_name_the_file_object_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (EXAMPLES / "iot/modbus-thermostat.yaml")
        .read_text()
        .replace("adminState: UNLOCKED\n  operatingState", "adminState: OPEN\n  operatingState")
    )
    with pytest.raises(
        ManifestError,
        match=r'bad\.yaml:2 Device/thermostat-1: spec\.adminState: Unsupported value: "OPEN"',
    ):
        load_manifests([bad])


def test_a_device_without_its_profile_is_an_error(tmp_path: Path) -> None:
    text = (
        (EXAMPLES / "iot/modbus-thermostat.yaml").read_text().replace("profileName: thermostat", "profileName: boiler")
    )
    (tmp_path / "m.yaml").write_text(text)
    with pytest.raises(ManifestError, match=r"spec\.profileName 'boiler' names no DeviceProfile"):
        device_profiles(load_manifests([tmp_path]))
