"""The manifests in examples/ apply to a real API server and print OpenYurt's columns."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.kube_helpers import kubectl, new_namespace
from yurt_iot.api import parse_resource
from yurt_iot.testing.controlplane import ControlPlane

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_examples_are_valid_models() -> None:
    docs = [d for p in sorted(EXAMPLES.rglob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    kinds = {parse_resource(d).kind for d in docs}
    assert kinds == {"Device", "DeviceService", "DeviceProfile", "NodePool", "YurtAppSet", "YurtAppDaemon"}


def test_examples_apply_and_print_openyurt_columns(control_plane: ControlPlane) -> None:
    namespace = new_namespace(control_plane, "examples")
    applied = kubectl(control_plane, "apply", "-n", namespace, "-R", "-f", str(EXAMPLES))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("created") + applied.stdout.count("configured") + applied.stdout.count(
        "unchanged"
    ) == sum(1 for p in EXAMPLES.rglob("*.yaml") for d in yaml.safe_load_all(p.read_text()) if d)

    patched = kubectl(control_plane, "patch", "device", "thermostat-1", "-n", namespace,
                      "--subresource=status", "--type=merge", "-p", '{"status": {"synced": false}}')  # fmt: skip
    assert patched.returncode == 0, patched.stderr
    devices = kubectl(control_plane, "get", "devices", "-n", namespace, "-o", "wide")
    assert devices.returncode == 0, devices.stderr
    assert _header(devices.stdout) == ["NAME", "NODEPOOL", "SYNCED", "MANAGED", "AGE"]
    rows = {line.split()[0]: line.split() for line in devices.stdout.splitlines()[1:]}
    assert set(rows) == {"thermostat-1", "opcua-machine-1", "mqtt-sensor-1"}
    assert rows["thermostat-1"][:4] == ["thermostat-1", "hangzhou", "false", "true"]

    short = kubectl(control_plane, "get", "dev,dsvc,dp", "-n", namespace)
    assert short.returncode == 0, short.stderr
    for name in ("device.iot.openyurt.io/thermostat-1", "deviceservice.iot.openyurt.io/device-modbus",
                 "deviceprofile.iot.openyurt.io/thermostat", "device.iot.openyurt.io/opcua-machine-1",
                 "deviceprofile.iot.openyurt.io/mqtt-sensor", "deviceservice.iot.openyurt.io/device-opcua",
                 ):  # fmt: skip
        assert name in short.stdout

    pools = kubectl(control_plane, "get", "np")
    assert pools.returncode == 0, pools.stderr
    assert _header(pools.stdout) == [
        "NAME",
        "TYPE",
        "READYNODES",
        "NOTREADYNODES",
        "LEADERNODES",
        "LEADERELECTIONAGE",
        "AGE",
    ]
    rows = {line.split()[0]: line.split() for line in pools.stdout.splitlines()[1:]}
    assert rows["hangzhou"][1] == "Edge" and rows["cloud"][1] == "Cloud"

    old = kubectl(control_plane, "get", "nodepools.v1beta1.apps.openyurt.io", "cloud", "-o", "yaml")
    assert old.returncode == 0, old.stderr
    assert yaml.safe_load(old.stdout)["apiVersion"] == "apps.openyurt.io/v1beta1"

    sets = kubectl(control_plane, "get", "yas", "-n", namespace)
    assert _header(sets.stdout) == ["NAME", "TOTAL", "READY", "UPDATED", "AGE"]
    assert "edge-web" in sets.stdout
    daemons = kubectl(control_plane, "get", "yad", "-n", namespace)
    assert "edge-agent" in daemons.stdout
    assert "deprecated" in daemons.stderr  # the API server's deprecation warning reaches the user


def test_server_defaults_match_the_models(control_plane: ControlPlane) -> None:
    """What the API server defaults (NodePool type, strategy, replicas) is what pydantic defaults."""
    namespace = new_namespace(control_plane, "defaults")
    manifest = {"apiVersion": "apps.openyurt.io/v1beta2", "kind": "NodePool", "metadata": {"name": f"{namespace}-pool"}}
    created = kubectl(control_plane, "create", "-o", "yaml", "-f", "-", stdin=yaml.safe_dump(manifest))
    assert created.returncode == 0, created.stderr
    stored = yaml.safe_load(created.stdout)
    assert stored["spec"] == parse_resource(manifest).to_dict()["spec"]
    assert stored["spec"] == {"type": "Edge", "leaderElectionStrategy": "random", "leaderReplicas": 1}
