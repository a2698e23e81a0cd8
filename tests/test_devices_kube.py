"""`yurt-iot devices ls|read|write --kube`: the Device CRs of a real API server, and with the native backend
driving a Modbus simulator, a write that waits until the device has taken the value."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from tests.iot.test_native import POOL, WITHIN, device, options, profile, register, service
from tests.kube_helpers import apply, kubectl, new_namespace
from yurt_iot.api.iot import Device
from yurt_iot.cli import app
from yurt_iot.iot.native import native_backend
from yurt_iot.kube import KubeClient
from yurt_iot.sim.modbus import ModbusSimulator
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_test, async_wait_for

runner = CliRunner()


def cli(cp: ControlPlane, namespace: str | None, *args: str) -> Any:
    """`yurt-iot devices ARGS --kube` in this process, against the control plane (in `namespace`, if given)."""
    where = ("--namespace", namespace) if namespace else ()
    command = ["devices", *args, "--kube", "--kubeconfig", str(cp.kubeconfig), *where]
    return runner.invoke(app, command, env={"COLUMNS": "200"})


class _Nowhere:
    host, port = "127.0.0.1", 1


NOWHERE: Any = _Nowhere()
"""Where a Device's Modbus protocol points when nothing runs it (what `device()` takes from a simulator)."""


def table_rows(text: str) -> list[list[str]]:
    """The words of each line of a printed table, rules left out."""
    return [line.split() for line in text.splitlines() if line.strip(" ─")]


def properties(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    """spec.deviceProperties of the Device as the API server has it."""
    got = kubectl(cp, "get", "-n", namespace, "device", name, "-o", "json")
    assert got.returncode == 0, got.stderr
    return dict(json.loads(got.stdout)["spec"]["deviceProperties"])


def patch_status(cp: ControlPlane, namespace: str, name: str, status: dict[str, Any]) -> None:
    patch = json.dumps({"status": status})
    result = kubectl(cp, "patch", "-n", namespace, "device", name, "--subresource=status", "--type=merge", "-p", patch)
    assert result.returncode == 0, result.stderr


def test_ls_shows_the_device_crs_of_the_namespace_and_pool(control_plane: ControlPlane, namespace: str) -> None:
    manifests = [service(), profile(), device("tank-a", NOWHERE), device("tank-b", NOWHERE, pool="beijing")]
    assert apply(control_plane, manifests, namespace).returncode == 0
    other = new_namespace(control_plane, "devices-other")
    assert apply(control_plane, [device("tank-elsewhere", NOWHERE)], other).returncode == 0
    patch_status(control_plane, namespace, "tank-a", {"synced": True, "operatingState": "UP", "adminState": "UNLOCKED",
                                                      "lastReported": 1_790_000_000_123})  # fmt: skip

    table = cli(control_plane, namespace, "ls")
    assert table.exit_code == 0, table.output
    header, *rows = table_rows(table.stdout)
    assert header == ["NAME", "POOL", "SERVICE", "PROFILE", "ADMIN", "OPERATING", "SYNCED", "LAST", "REPORTED"]
    assert rows[0][:7] == ["tank-a", POOL, "native", "tank", "UNLOCKED", "UP", "true"]
    assert rows[1][:7] == ["tank-b", "beijing", "native", "tank", "-", "-", "false"]
    assert len(rows) == 2  # not the other namespace's device

    listed = json.loads(cli(control_plane, namespace, "ls", "-o", "json").stdout)
    assert listed[0] == {
        "name": "tank-a", "namespace": namespace, "nodePool": POOL, "serviceName": "native", "profileName": "tank",
        "adminState": "UNLOCKED", "operatingState": "UP", "synced": True, "lastReported": "2026-09-21T14:13:20.123Z",
    }  # fmt: skip
    assert [d["name"] for d in listed] == ["tank-a", "tank-b"]

    beijing = json.loads(cli(control_plane, namespace, "ls", "--pool", "beijing", "-o", "json").stdout)
    assert [d["name"] for d in beijing] == ["tank-b"]


def test_the_namespace_defaults_to_the_kubeconfig_contexts(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    assert apply(control_plane, [device("tank-c", NOWHERE)], namespace).returncode == 0
    config = yaml.safe_load(control_plane.kubeconfig.read_text())
    plain = config["contexts"][0]
    config["contexts"] = [{"name": "factory", "context": {**plain["context"], "namespace": namespace}}, plain]
    config["current-context"] = "factory"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))

    def names(*args: str) -> list[str]:
        result = runner.invoke(app, ["devices", "ls", "--kube", "--kubeconfig", str(kubeconfig), "-o", "json", *args])
        assert result.exit_code == 0, result.output
        return [d["name"] for d in json.loads(result.stdout)]

    assert names() == ["tank-c"]
    assert "tank-c" not in names("--context", plain["name"])  # a context without a namespace: "default"


def test_write_sets_desired_values_and_keeps_the_others(control_plane: ControlPlane, namespace: str) -> None:
    kept = {"name": "other", "putURL": "http://edge/other", "desiredValue": "7"}
    tank = device("tank-w", NOWHERE, deviceProperties={"other": kept})
    assert apply(control_plane, [service(), profile(), tank], namespace).returncode == 0

    result = cli(control_plane, namespace, "write", "tank-w", "setpoint=42", "--no-wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "tank-w: desired setpoint=42"
    assert properties(control_plane, namespace, "tank-w") == {
        "other": kept, "setpoint": {"name": "setpoint", "desiredValue": "42"},
    }  # fmt: skip

    # read shows the desired value next to what is (not yet) reported
    shown = json.loads(cli(control_plane, namespace, "read", "tank-w", "setpoint", "-o", "json").stdout)
    assert shown["values"] == {"setpoint": None} and shown["desired"] == {"setpoint": "42"}

    # what the controller would refuse is refused before anything is written, naming the resource
    for assignment, why in [
        ("level=3", "'level' is read-only"),
        ("setpoint=5000", "'setpoint'"),
        ("nozzle=1", "profile tank has no resource 'nozzle'"),
    ]:
        refused = cli(control_plane, namespace, "write", "tank-w", assignment, "--no-wait")
        assert refused.exit_code == 1 and why in refused.stderr, refused.output
    assert properties(control_plane, namespace, "tank-w")["setpoint"]["desiredValue"] == "42"


def test_missing_devices_and_resources_are_named(control_plane: ControlPlane, namespace: str) -> None:
    assert apply(control_plane, [service(), profile(), device("tank-m", NOWHERE)], namespace).returncode == 0
    reported = {"setpoint": {"name": "setpoint", "actualValue": "3"}}
    patch_status(control_plane, namespace, "tank-m", {"deviceProperties": reported})

    for args in (["read", "ghost"], ["write", "ghost", "setpoint=1"]):
        result = cli(control_plane, namespace, *args)
        assert result.exit_code == 1
        assert f"device ghost not found in namespace {namespace}" in result.stderr

    missing = cli(control_plane, namespace, "read", "tank-m", "setpoint", "level")
    assert missing.exit_code == 1
    assert "reports no value of 'level'" in missing.stderr and "(it has: setpoint)" in missing.stderr

    elsewhere = cli(control_plane, namespace, "read", "tank-m", "--pool", "beijing")
    assert elsewhere.exit_code == 1 and f"is in pool {POOL}, not beijing" in elsewhere.stderr

    # nothing runs the device: the wait ends, saying what was not reported
    timed_out = cli(control_plane, namespace, "write", "tank-m", "setpoint=9", "--timeout", "1")
    assert timed_out.exit_code == 1
    assert "did not report setpoint=9 (reported: 3) within 1 s" in timed_out.stderr

    no_kube = runner.invoke(app, ["devices", "ls", "--namespace", namespace])
    assert no_kube.exit_code == 2 and "--namespace: only with --kube" in no_kube.output


def test_write_compares_values_in_the_form_the_controller_reports_them(
    control_plane: ControlPlane, namespace: str
) -> None:
    thermo = profile("thermo")
    thermo["spec"]["deviceResources"][0]["properties"]["valueType"] = "Float32"
    assert (
        apply(control_plane, [service(), thermo, device("th-1", NOWHERE, profileName="thermo")], namespace).returncode
        == 0
    )
    reported = {"setpoint": {"name": "setpoint", "actualValue": "2.25e+01"}}  # how a Float32 22.5 is reported
    patch_status(control_plane, namespace, "th-1", {"deviceProperties": reported})

    result = cli(control_plane, namespace, "write", "th-1", "setpoint=22.5", "--timeout", str(WITHIN))
    assert result.exit_code == 0 and result.stdout.strip() == "th-1: reported setpoint=22.5", result.output
    shown = json.loads(cli(control_plane, namespace, "read", "th-1", "-o", "json").stdout)
    assert shown["values"] == {"setpoint": "2.25e+01"} and shown["desired"] == {"setpoint": "22.5"}


@async_test(timeout=120)
async def test_write_waits_until_the_native_backend_reports_the_value(
    control_plane: ControlPlane, namespace: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        ModbusSimulator(update_period=None) as sim,
        KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube,
        native_backend(options(tmp_path, control_plane, namespace, mosquitto, "devices-cli")),
    ):
        devices = kube.resource(Device, namespace)
        assert apply(control_plane, [service(), profile(), device("tank-1", sim)], namespace).returncode == 0

        async def up() -> bool:
            return ((await devices.get("tank-1")).get("status") or {}).get("operatingState") == "UP"

        await async_wait_for(up, within=WITHIN, what="tank-1 UP")

        async def yurt_iot(*args: str) -> tuple[int, str, str]:
            """The command in its own process, so this loop keeps running the backend meanwhile."""
            process = await asyncio.create_subprocess_exec(
                "yurt-iot", "devices", *args, "--kube", "--kubeconfig", str(control_plane.kubeconfig),
                "-n", namespace, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await process.communicate()
            return process.returncode or 0, out.decode(), err.decode()

        code, out, err = await yurt_iot("write", "tank-1", "setpoint=42", "--timeout", str(WITHIN))
        assert (code, out.strip()) == (0, "tank-1: reported setpoint=42"), err
        assert await register(sim, 0) == 42  # it was reported because the device has it

        code, out, err = await yurt_iot("read", "tank-1", "-o", "json")
        assert code == 0, err
        shown = json.loads(out)
        assert shown["values"] == {"setpoint": "42"} and shown["desired"] == {"setpoint": "42"}
        assert shown["reportedAt"] is not None

        code, out, err = await yurt_iot("read", "tank-1")
        assert code == 0 and table_rows(out)[:2] == [["RESOURCE", "ACTUAL", "DESIRED"], ["setpoint", "42", "42"]], out
