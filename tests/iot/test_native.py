"""The native backend end to end: Device CRs in a real API server driven by the runtime against the Modbus
simulator, readings through a real Mosquitto, status and desired values seen through the API server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from pymodbus.client import AsyncModbusTcpClient

from yurt_iot.api.iot import Device, DeviceService
from yurt_iot.iot.native import FINALIZER, NativeOptions, NativeSettings, RunningNative, native_backend
from yurt_iot.kube import KubeClient, NotFound, ResourceClient, load_config
from yurt_iot.runtime.backoff import Backoff
from yurt_iot.runtime.mqttclient import MqttClient
from yurt_iot.runtime.publisher import MqttSettings
from yurt_iot.sim.modbus import ModbusSimulator
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.waiting import async_test, async_wait_for

from ..kube.netcut import CuttableLink
from ..kube_helpers import apply, kubectl

POOL = "hangzhou"
WITHIN = 15.0  # seconds any single expected change may take on a loaded machine
EDITS = 20


# --------------------------------------------------------------------------- manifests


def service(name: str = "native", pool: str = POOL, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "DeviceService", "metadata": {"name": name},
        "spec": {"baseAddress": f"native://{pool}", "nodePool": pool, **spec},
    }  # fmt: skip


def profile(name: str = "tank", pool: str = POOL, **level: str) -> dict[str, Any]:
    def register(name: str, address: int, rw: str, **properties: str) -> dict[str, Any]:
        return {
            "name": name, "description": name, "isHidden": False,
            "properties": {"valueType": "Int16", "readWrite": rw, **properties},
            "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": address},
        }  # fmt: skip

    resources = [register("setpoint", 0, "RW", minimum="-1000", maximum="1000"), register("level", 1, "R", **level)]
    return {
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "DeviceProfile", "metadata": {"name": name},
        "spec": {"nodePool": pool, "deviceResources": resources},
    }  # fmt: skip


def device(name: str, sim: ModbusSimulator, pool: str = POOL, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "Device", "metadata": {"name": name},
        "spec": {
            "serviceName": "native", "profileName": "tank", "notify": False, "nodePool": pool,
            "protocols": {"modbus-tcp": {"Address": sim.host, "Port": str(sim.port), "UnitID": "1",
                                         "Timeout": "300ms"}},
            "autoEvents": [{"sourceName": "level", "interval": "200ms"}],
            **spec,
        },
    }  # fmt: skip


def desired(value: str) -> dict[str, Any]:
    return {"spec": {"deviceProperties": {"setpoint": {"name": "setpoint", "desiredValue": value}}}}


# --------------------------------------------------------------------------- helpers


class Subscriber:
    """Every event the broker delivers under `prefix`, decoded (an MqttClient on the test's loop)."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.prefix = prefix
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.client = MqttClient(MqttSettings(broker.host, broker.port, backoff=Backoff(initial=0.05, cap=0.5)))
        self.client.paho.on_message = lambda _client, _userdata, msg: self.events.append(
            (msg.topic, json.loads(msg.payload))
        )
        self.subscribed = asyncio.Event()

    async def serve(self, lost: asyncio.Future[None]) -> None:
        await self.client.subscribe([f"{self.prefix}/#"], 0)
        self.subscribed.set()
        await lost

    def of(self, name: str) -> list[dict[str, Any]]:
        return [event for _, event in self.events if event["deviceName"] == name]


@contextlib.asynccontextmanager
async def subscribed(broker: Mosquitto) -> AsyncIterator[Subscriber]:
    sub = Subscriber(broker, f"native-{secrets.token_hex(4)}")
    task = asyncio.create_task(sub.client.run(sub.serve))
    try:
        async with asyncio.timeout(WITHIN):
            await sub.subscribed.wait()
        yield sub
    finally:
        await sub.client.close()
        await asyncio.gather(task, return_exceptions=True)


def options(tmp_path: Path, cp: ControlPlane, namespace: str, broker: Mosquitto, prefix: str) -> NativeOptions:
    return NativeOptions(
        namespace=namespace,
        pool=POOL,
        kubeconfig=cp.kubeconfig,
        mqtt=MqttSettings(broker.host, broker.port, backoff=Backoff(initial=0.05, cap=0.5)),
        spool_dir=tmp_path / "spool",
        topic_prefix=f"{prefix}/edgex/events/device",
        ops_port=0,
        driver_timeout=0.5,
        settings=NativeSettings(min_status_interval=0.2),
    )


async def status_of(devices: ResourceClient, name: str) -> dict[str, Any]:
    return (await devices.get(name)).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def actual(status: dict[str, Any], prop: str) -> str | None:
    return ((status.get("deviceProperties") or {}).get(prop) or {}).get("actualValue")


async def register(sim: ModbusSimulator, address: int) -> int:
    client = AsyncModbusTcpClient(sim.host, port=sim.port)
    await client.connect()
    try:
        return int((await client.read_holding_registers(address, count=1, device_id=1)).registers[0])
    finally:
        client.close()


def running(backend: RunningNative, name: str) -> bool:
    return name in backend.controller.gateway.devices


# --------------------------------------------------------------------------- tests


@async_test(timeout=150)
async def test_a_native_device_is_driven_from_its_cr_and_its_status_follows_it(
    control_plane: ControlPlane, namespace: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        ModbusSimulator(update_period=None) as sim,
        subscribed(mosquitto) as sub,
        KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube,
        native_backend(options(tmp_path, control_plane, namespace, mosquitto, sub.prefix)) as backend,
    ):
        devices = kube.resource(Device, namespace)
        other = device("elsewhere", sim, pool="beijing")
        result = apply(control_plane, [service(), profile(), device("tank-1", sim), other], namespace)
        assert result.returncode == 0, result.stderr

        # readings reach MQTT, the status shows the device UP, and the finalizer guards its runtime
        await async_wait_for(lambda: sub.of("tank-1"), within=WITHIN, what="a reading of tank-1 on MQTT")
        topic = next(t for t, e in sub.events if e["deviceName"] == "tank-1")
        assert topic == f"{sub.prefix}/edgex/events/device/native/tank/tank-1/level"

        async def up() -> bool:
            return (await status_of(devices, "tank-1")).get("operatingState") == "UP"

        await async_wait_for(up, within=WITHIN, what="tank-1 UP in its status")
        obj = await devices.get("tank-1")
        assert FINALIZER in obj["metadata"]["finalizers"]
        assert obj["status"]["synced"] is True and obj["status"]["lastConnected"] > 0

        # readings flow without a status write each
        seen = len(sub.of("tank-1"))
        await async_wait_for(lambda: len(sub.of("tank-1")) >= seen + 8, within=WITHIN, what="8 more readings")
        assert (await devices.get("tank-1"))["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]

        # the delivery figures are on /metrics, as on a standalone gateway
        async with httpx.AsyncClient() as http:
            scraped = (await http.get(f"http://127.0.0.1:{backend.ops_port}/metrics")).text
        acked = re.search(r"^yurt_iot_mqtt_acked_total (\S+)$", scraped, re.MULTILINE)
        assert acked is not None and float(acked.group(1)) >= 8, scraped[-2000:]

        # the other pool's device is never run nor touched
        elsewhere = await devices.get("elsewhere")
        assert not running(backend, "elsewhere")
        assert "finalizers" not in elsewhere["metadata"] and "status" not in elsewhere

        # desired values: each edit reaches the register and comes back as actualValue
        runner = backend.controller.gateway.runner("tank-1")
        latencies = []
        for i in range(EDITS):
            value = str(100 + i * 7)
            started = time.monotonic()
            await devices.patch("tank-1", desired(value))

            async def shown(value: str = value) -> bool:
                return actual(await status_of(devices, "tank-1"), "setpoint") == value

            await async_wait_for(shown, within=WITHIN, interval=0.01, what=f"actualValue {value}")
            latencies.append(time.monotonic() - started)
            assert await register(sim, 0) == int(value)
        assert backend.controller.gateway.runner("tank-1") is runner, "editing a desired value restarted the device"
        cuts = statistics.quantiles(latencies, n=20)
        p50, p95 = cuts[9], cuts[18]
        print(f"\ndesired value -> actualValue, {EDITS} edits: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
        assert p95 < 3.0, f"p95 {p95:.2f} s (target 1 s; the bound is generous for loaded CI machines)"
        condition_ok = condition(await status_of(devices, "tank-1"), "DeviceManaging")
        assert condition_ok["status"] == "True"

        # the device switched off: DOWN in the status
        await sim.stop()

        async def down() -> bool:
            return (await status_of(devices, "tank-1")).get("operatingState") == "DOWN"

        await async_wait_for(down, within=WITHIN, what="tank-1 DOWN in its status")

        # it comes back without its settings (a fresh simulator on the same port): the desired value again
        async with ModbusSimulator(port=sim.port, update_period=None) as rebooted:
            await async_wait_for(up, within=WITHIN, what="tank-1 UP again")
            await async_wait_for(
                lambda: register(rebooted, 0), within=WITHIN, what="setpoint written again after the power cycle"
            )
            assert await register(rebooted, 0) == int(value)

            # delete: the runtime stops, then the finalizer is released and the CR goes
            result = kubectl(control_plane, "delete", "-n", namespace, "device", "tank-1", "--wait=false")
            assert result.returncode == 0, result.stderr

            async def gone() -> bool:
                try:
                    await devices.get("tank-1")
                except NotFound:
                    return True
                return False

            await async_wait_for(gone, within=WITHIN, what="tank-1 deleted")
            assert not running(backend, "tank-1")
            assert (await devices.get("elsewhere"))["metadata"].get("finalizers") is None


@async_test(timeout=90)
async def test_a_locked_device_is_not_polled_and_a_refused_value_is_explained(
    control_plane: ControlPlane, namespace: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        ModbusSimulator(update_period=None) as sim,
        KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube,
        native_backend(options(tmp_path, control_plane, namespace, mosquitto, "locked")) as backend,
    ):
        devices = kube.resource(Device, namespace)
        manifests = [service(), profile(), device("tank-2", sim, adminState="LOCKED", **desired("42")["spec"])]
        result = apply(control_plane, manifests, namespace)
        assert result.returncode == 0, result.stderr

        async def locked() -> dict[str, Any]:
            return condition(await status_of(devices, "tank-2"), "DeviceManaging")

        managing = await async_wait_for(locked, within=WITHIN, what="the Locked condition")
        assert (managing["status"], managing["reason"]) == ("False", "Locked")
        assert not running(backend, "tank-2")
        assert sim.stats.requests() == 0 and await register(sim, 0) == 0

        # unlocked: polled, and the desired value written
        await devices.patch("tank-2", {"spec": {"adminState": "UNLOCKED"}})

        async def written() -> bool:
            return actual(await status_of(devices, "tank-2"), "setpoint") == "42"

        await async_wait_for(written, within=WITHIN, what="setpoint 42 written after unlocking")
        assert running(backend, "tank-2") and await register(sim, 0) == 42

        # a value beyond the profile's maximum is refused, by name, and nothing reaches the device
        await devices.patch("tank-2", desired("5000"))

        async def refused() -> dict[str, Any] | None:
            managing = condition(await status_of(devices, "tank-2"), "DeviceManaging")
            return managing if managing.get("reason") == "WriteFailed" else None

        managing = await async_wait_for(refused, within=WITHIN, what="the WriteFailed condition")
        assert managing["status"] == "False"
        assert "setpoint" in managing["message"] and "5000" in managing["message"]
        assert await register(sim, 0) == 42


@async_test(timeout=120)
async def test_devices_keep_running_while_the_api_server_is_away_and_their_status_catches_up(
    control_plane: ControlPlane, namespace: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    link = CuttableLink(control_plane.port)
    await link.start()
    config = load_config(control_plane.kubeconfig)
    config.host = link.url
    try:
        async with (
            ModbusSimulator(update_period=None) as sim,
            subscribed(mosquitto) as sub,
            KubeClient.from_kubeconfig(control_plane.kubeconfig) as direct,
            KubeClient(config) as through_link,
            native_backend(
                options(tmp_path, control_plane, namespace, mosquitto, sub.prefix), kube=through_link
            ) as backend,
        ):
            devices = direct.resource(Device, namespace)
            result = apply(control_plane, [service(), profile(), device("tank-3", sim)], namespace)
            assert result.returncode == 0, result.stderr

            async def state_is(wanted: str) -> bool:
                return (await status_of(devices, "tank-3")).get("operatingState") == wanted

            await async_wait_for(lambda: state_is("UP"), within=WITHIN, what="tank-3 UP")

            link.cut()
            seen = len(sub.of("tank-3"))
            await async_wait_for(lambda: len(sub.of("tank-3")) > seen + 5, within=WITHIN, what="readings, server away")
            runner = backend.controller.gateway.runner("tank-3")
            await sim.stop()  # the device fails while nobody can be told
            await async_wait_for(lambda: runner.state == "DOWN", within=WITHIN, what="the runtime sees tank-3 DOWN")
            assert await state_is("UP"), "the status changed although the controller could not reach the server"

            link.heal()
            await async_wait_for(
                lambda: state_is("DOWN"), within=2 * WITHIN, what="tank-3 DOWN once the server is back"
            )
    finally:
        await link.close()


@async_test(timeout=90)
async def test_profile_and_service_edits_reach_only_the_devices_using_them(
    control_plane: ControlPlane, namespace: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with (
        ModbusSimulator(units=[1, 2], update_period=None) as sim,
        KubeClient.from_kubeconfig(control_plane.kubeconfig) as kube,
        native_backend(options(tmp_path, control_plane, namespace, mosquitto, "edits")) as backend,
    ):
        devices = kube.resource(Device, namespace)
        gateway = backend.controller.gateway
        pump = device("pump-1", sim, profileName="pump")
        pump["spec"]["protocols"]["modbus-tcp"]["UnitID"] = "2"
        manifests = [service(), profile(), profile("pump"), device("tank-4", sim), pump]
        result = apply(control_plane, manifests, namespace)
        assert result.returncode == 0, result.stderr
        await async_wait_for(lambda: running(backend, "tank-4") and running(backend, "pump-1"), within=WITHIN)
        tank, pump_runner = gateway.runner("tank-4"), gateway.runner("pump-1")

        # a profile edit restarts its device with the new profile; the other device keeps polling
        result = apply(control_plane, profile(scale="0.5"), namespace)
        assert result.returncode == 0, result.stderr
        await async_wait_for(lambda: running(backend, "tank-4") and gateway.runner("tank-4") is not tank, within=WITHIN)
        assert gateway.runner("tank-4").resources["level"].spec.scale is not None
        assert gateway.runner("pump-1") is pump_runner

        # the service LOCKED: its devices stop
        services = kube.resource(DeviceService, namespace)
        await services.patch("native", {"spec": {"adminState": "LOCKED"}})
        await async_wait_for(lambda: not gateway.devices, within=WITHIN, what="every device of the service stopped")

        # the service handed to EdgeX: the native backend lets go of its devices' CRs
        await services.patch("native", {"spec": {"adminState": "UNLOCKED", "baseAddress": "http://edgex:59901"}})

        async def released() -> bool:
            objs = [await devices.get(name) for name in ("tank-4", "pump-1")]
            return all(FINALIZER not in (o["metadata"].get("finalizers") or []) for o in objs)

        await async_wait_for(released, within=WITHIN, what="the finalizers released")
        assert not gateway.devices
