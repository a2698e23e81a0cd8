"""`yurt-iot dock`, the per-pool device controller as operators run it: one process that drives the pool's
native devices and keeps its EdgeX devices in sync, against the real API server, Mosquitto and EdgeX."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from yurt_iot.iot.edgex import CoreMetadataClient
from yurt_iot.iot.pool import SERVICE_ACCOUNT_NAMESPACE
from yurt_iot.sim.modbus import ModbusSimulator
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.ports import stable_free_port
from yurt_iot.testing.waiting import async_test, async_wait_for

from . import test_native as native
from .sync_helpers import POOL, device_cr, edgex_object, kubectl, profile_cr, service_cr

WITHIN = 20.0


def dock(cp: ControlPlane, namespace: str, edgex: EdgeX, broker: Mosquitto, spool: Path, ops_port: int) -> list[str]:
    return [
        sys.executable, "-m", "yurt_iot.cli", "dock", "--namespace", namespace, "--pool", POOL,
        "--kubeconfig", str(cp.kubeconfig), "--edgex-metadata", edgex.metadata_url, "--edgex-command",
        edgex.command_url, "--edgex-bus-host", broker.host, "--edgex-bus-port", str(broker.port),
        "--mqtt-host", broker.host, "--mqtt-port", str(broker.port), "--spool-dir", str(spool),
        "--ops-port", str(ops_port), "--log-format", "json",
    ]  # fmt: skip


def status(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    obj = cp.kubectl_json("get", "devices.iot.openyurt.io", name, "-n", namespace)
    return dict(obj.get("status") or {})


@contextlib.asynccontextmanager
async def running(argv: list[str], log_path: Path) -> AsyncIterator[None]:
    """The dock as a process for the block; after it, SIGTERM must stop the dock cleanly (exit 0)."""
    with log_path.open("w") as log:
        process = await asyncio.to_thread(
            subprocess.Popen, argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        try:
            yield
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, WITHIN)
            assert code == 0, (await asyncio.to_thread(log_path.read_text))[-3000:]
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient() as http:
            return (await http.get(url)).status_code == 200
    except httpx.HTTPError:
        return False


async def in_edgex(metadata: CoreMetadataClient, device: str) -> bool:
    return await edgex_object(metadata, "Device", device) is not None


@async_test(timeout=120)
async def test_one_dock_process_drives_native_devices_and_syncs_edgex_ones(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ops_port = stable_free_port()
    argv = dock(control_plane, namespace, edgex, mosquitto, tmp_path / "spool", ops_port)
    async with (
        running(argv, tmp_path / "dock.log"),
        ModbusSimulator(update_period=None) as sim,
        CoreMetadataClient(edgex.metadata_url) as metadata,
    ):
        native_docs = [native.service(), native.profile(), native.device("tank-1", sim)]
        edgex_docs = [service_cr("modbus-svc"), profile_cr("thermostat"), device_cr("t-1", "modbus-svc", "thermostat")]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=native_docs + edgex_docs)

        await async_wait_for(lambda: answers(f"http://127.0.0.1:{ops_port}/readyz"), within=WITHIN,
                             what="/readyz of the dock")  # fmt: skip
        await async_wait_for(
            lambda: status(control_plane, namespace, "tank-1").get("operatingState") == "UP",
            within=WITHIN, what="the native device UP in its status",
        )  # fmt: skip
        await async_wait_for(lambda: in_edgex(metadata, "t-1"), within=WITHIN,
                             what="the EdgeX device created in core-metadata")  # fmt: skip
        assert await edgex_object(metadata, "DeviceService", "native") is None  # native services stay ours


@async_test(timeout=120)
async def test_openyurts_dock_command_line_runs_unchanged(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """The flags OpenYurt's yurt-iot-dock Deployments pass: EdgeX addresses without a scheme, --version, Go
    listen addresses for the probes; the device reaches EdgeX and the probe port answers."""
    probe_port = stable_free_port()
    argv = [
        sys.executable, "-m", "yurt_iot.cli", "dock", f"--namespace={namespace}", "--version=napa",
        f"--nodepool={POOL}", f"--core-metadata-address={edgex.metadata_url.removeprefix('http://')}",
        f"--core-command-address={edgex.command_url.removeprefix('http://')}", "--core-data-address=core-data:59880",
        "--edge-sync-period=5", f"--health-probe-bind-address=127.0.0.1:{probe_port}", "--metrics-bind-address=0",
        "--leader-elect", f"--kubeconfig={control_plane.kubeconfig}", f"--mqtt-port={mosquitto.port}",
        f"--spool-dir={tmp_path / 'spool'}",
    ]  # fmt: skip
    async with running(argv, tmp_path / "dock.log"), CoreMetadataClient(edgex.metadata_url) as metadata:
        docs = [service_cr("modbus-svc"), profile_cr("thermostat"), device_cr("t-9", "modbus-svc", "thermostat")]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: in_edgex(metadata, "t-9"), within=WITHIN,
                             what="the device created in core-metadata")  # fmt: skip
        await async_wait_for(lambda: answers(f"http://127.0.0.1:{probe_port}/healthz"), within=WITHIN,
                             what="/healthz on the --health-probe-bind-address")  # fmt: skip
        metrics = f"http://127.0.0.1:{probe_port}/metrics"
        await async_wait_for(lambda: edgex_series_in(metrics, namespace), within=WITHIN,
                             what="the EdgeX sync's series beside the native backend's in /metrics")  # fmt: skip


async def edgex_series_in(url: str, namespace: str) -> bool:
    """Whether /metrics counts the EdgeX device controller's reconciles and this process's hold of the Lease."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(url)).text
    return (
        'yurt_iot_reconciles_total{controller="edgex-device",result="success"}' in text
        and f'yurt_iot_leader{{lease="{namespace}/yurt-iot-edgex-{POOL}"}} 1.0' in text
    )


@async_test(timeout=120)
async def test_an_edgex_only_dock_serves_its_own_probes_and_metrics(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    ops_port = stable_free_port()
    argv = [*dock(control_plane, namespace, edgex, mosquitto, tmp_path / "spool", ops_port), "--no-native",
            "--leader-elect"]  # fmt: skip
    async with running(argv, tmp_path / "dock.log"), CoreMetadataClient(edgex.metadata_url) as metadata:
        docs = [service_cr("modbus-svc"), profile_cr("thermostat"), device_cr("t-5", "modbus-svc", "thermostat")]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: in_edgex(metadata, "t-5"), within=WITHIN,
                             what="the device created in core-metadata")  # fmt: skip
        assert await answers(f"http://127.0.0.1:{ops_port}/readyz")
        metrics = f"http://127.0.0.1:{ops_port}/metrics"
        await async_wait_for(lambda: edgex_series_in(metrics, namespace), within=WITHIN,
                             what="the EdgeX sync's series in /metrics")  # fmt: skip


def test_an_unknown_edgex_release_is_refused_by_flag(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "yurt_iot.cli", "dock", "--namespace=iot", "--nodepool=p", "--version=jakarta",
            f"--spool-dir={tmp_path}"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--version: unknown EdgeX release 'jakarta'" in result.stderr


@pytest.mark.skipif(SERVICE_ACCOUNT_NAMESPACE.exists(), reason="in a pod, the dock reads its own pod's node")
def test_dock_needs_a_pool_or_a_node(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NODE_NAME", "YURT_IOT_POOL")}
    argv = [sys.executable, "-m", "yurt_iot.cli", "dock", "--namespace", "default", "--spool-dir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2 and "--pool" in result.stderr
