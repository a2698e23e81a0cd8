"""The `yurt-iot` command line."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.system.harness import GatewayProcess, Simulator
from yurt_iot import __version__
from yurt_iot.runtime.deviceapi import DeviceApi
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.ports import stable_free_port
from yurt_iot.testing.waiting import async_test, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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


# --- yurt-iot devices, against a real gateway process and the Modbus simulator ------------------------------


@pytest.fixture
def thermostat_gateway(tmp_path: Path, mosquitto: Mosquitto) -> Iterator[str]:
    """A `yurt-iot gateway` running the example thermostat against a simulator; yields its ops URL."""
    sim = Simulator("1")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    example = (EXAMPLES / "iot/modbus-thermostat.yaml").read_text()
    (manifests / "thermostat.yaml").write_text(example.replace('Port: "1502"', f'Port: "{sim.port}"'))
    gateway = GatewayProcess(manifests, tmp_path / "spool", mosquitto.port, tmp_path / "gateway.log")
    try:
        wait_for(gateway.ready, timeout=20, what="gateway ready")
        yield f"http://127.0.0.1:{gateway.ops_port}"
    finally:
        gateway.stop()
        sim.stop()


def test_devices_ls_read_and_write(thermostat_gateway: str) -> None:
    url = ("--gateway", thermostat_gateway)

    def listed() -> dict[str, Any] | None:
        found = json.loads(run("devices", "ls", *url, "-o", "json").stdout)
        return found[0] if found and found[0]["state"] == "UP" and "Temperature" in found[0]["latest"] else None

    device = wait_for(listed, timeout=10, what="thermostat-1 UP with a temperature")
    assert (device["name"], device["protocol"], device["profile"]) == ("thermostat-1", "modbus-tcp", "thermostat")
    table = run("devices", "ls", *url)
    assert table.returncode == 0
    row = next(line for line in table.stdout.splitlines() if "thermostat-1" in line)
    assert "modbus-tcp" in row and "UP" in row and "Temperature=" in table.stdout  # values may wrap

    # the manifest's desiredValue was written when the gateway started the device
    read = run("devices", "read", "thermostat-1", "SetPoint", "FanOn", *url, "-o", "json")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout) == {"device": "thermostat-1", "values": {"SetPoint": 21.5, "FanOn": False}}

    written = run("devices", "write", "thermostat-1", "SetPoint=22.5", "FanOn=true", *url)
    assert written.returncode == 0, written.stderr
    read = run("devices", "read", "thermostat-1", "SetPoint", "FanOn", *url)
    assert read.returncode == 0
    assert re.search(r"SetPoint\s+22\.5", read.stdout) and re.search(r"FanOn\s+true", read.stdout)

    refused = run("devices", "write", "thermostat-1", "SetPoint=99", *url)
    assert refused.returncode == 1
    assert "SetPoint" in refused.stderr and "maximum" in refused.stderr
    unknown = run("devices", "read", "boiler-7", *url)
    assert unknown.returncode == 1 and "no device 'boiler-7'" in unknown.stderr
    missing = run("devices", "read", "thermostat-1", "Pressure", *url)
    assert missing.returncode == 1 and "Pressure" in missing.stderr


def test_devices_says_when_the_gateway_is_not_there() -> None:
    result = run("devices", "ls", "--gateway", f"http://127.0.0.1:{stable_free_port()}")
    assert result.returncode == 1
    assert "cannot reach the gateway at http://127.0.0.1:" in result.stderr


@async_test(10)
async def test_writes_are_accepted_from_the_gateways_host_only() -> None:
    """The devices API has no authentication: another host may read, but not move actuators."""
    api = DeviceApi(Gateway(lambda topic, payload: True))
    body = b'{"SetPoint": "22"}'
    status, _, refused = await api("PUT", "/api/v1/devices/thermostat-1", body, "10.0.0.7")
    assert status == 403 and b"gateway's host only" in refused
    assert (await api("PUT", "/api/v1/devices/thermostat-1", body, "127.0.0.1"))[0] == 404  # on to the lookup
    assert (await api("GET", "/api/v1/devices", b"", "10.0.0.7"))[0] == 200
