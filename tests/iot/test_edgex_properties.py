"""Desired property values of a Device CR reach the device through EdgeX core-command, and the values read back
appear in its status; only properties whose desired value differs from the last one read are written."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator

from yurt_iot.iot.edgex import CoreMetadataClient
from yurt_iot.iot.edgex.properties import same_value
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.edgex.http import Request, Response, json_response, start_server
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.ports import LOOPBACK, free_port
from yurt_iot.testing.waiting import async_test, async_wait_for

from .sync_helpers import DEADLINE, condition, device_cr, kubectl, profile_cr, service_cr, syncing


@contextlib.asynccontextmanager
async def device_service() -> AsyncIterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """A device service behind core-command that keeps what is written and reads it back (Int16 values, as
    EdgeX readings carry them). Yields its base address and the writes it got as (device, body) pairs."""
    values: dict[tuple[str, str], str] = {}
    writes: list[tuple[str, dict[str, str]]] = []

    async def handle(request: Request) -> Response:
        *_, device, command = request.path.split("/")
        if request.method == "PUT":
            body = request.json()
            writes.append((device, body))
            values.update({(device, k): str(v) for k, v in body.items()})
            return json_response(200, {"apiVersion": "v3", "statusCode": 200})
        reading = {"deviceName": device, "resourceName": command, "valueType": "Int16"}
        reading["value"] = values.get((device, command), "0")
        event = {"deviceName": device, "sourceName": command, "origin": 1, "readings": [reading]}
        return json_response(200, {"apiVersion": "v3", "statusCode": 200, "event": event})

    port = free_port()
    server = await start_server(handle, LOOPBACK, port)
    try:
        yield f"http://{LOOPBACK}:{port}", writes
    finally:
        server.close()


def test_read_back_values_compare_as_numbers_where_they_are_numbers() -> None:
    assert same_value("2.15e+01", "21.5")
    assert same_value("true", "True")
    assert not same_value("21", "22")
    assert not same_value(None, "1")


@async_test(timeout=60)
async def test_a_desired_value_is_written_and_the_read_back_value_shows_in_the_status(
    control_plane: ControlPlane, namespace: str, edgex: EdgeX, mosquitto: Mosquitto
) -> None:
    suffix = secrets.token_hex(3)
    svc, prof, dev = f"modbus-{suffix}", f"thermostat-{suffix}", f"room-{suffix}"

    def desired(value: str) -> dict[str, object]:
        return device_cr(
            dev, svc, prof, operatingState="UP",
            deviceProperties={"Setpoint": {"name": "Setpoint", "desiredValue": value}},
        )  # fmt: skip

    def actual() -> str | None:
        obj = sync.informers["Device"].store.get(namespace, dev) or {}
        return (((obj.get("status") or {}).get("deviceProperties") or {}).get("Setpoint") or {}).get("actualValue")

    async with (
        device_service() as (base_address, writes),
        syncing(control_plane, namespace, edgex, mosquitto) as sync,
        CoreMetadataClient(edgex.metadata_url) as md,
    ):
        docs = [service_cr(svc, baseAddress=base_address), profile_cr(prof), desired("21")]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=docs)
        await async_wait_for(lambda: actual() == "21", within=DEADLINE, what="Setpoint 21 read back")
        assert writes == [(dev, {"Setpoint": "21"})]
        obj = sync.informers["Device"].store.get(namespace, dev)
        assert condition(obj, "DeviceManaging")["status"] == "True"

        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=[desired("23")])
        await async_wait_for(lambda: actual() == "23", within=DEADLINE, what="Setpoint 23 read back")
        # An edit of something else writes nothing: the value read back is already the desired one.
        edited = desired("23")
        edited["spec"]["labels"] = ["floor-3"]
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=[edited])
        await async_wait_for(lambda: _labels(md, dev), within=DEADLINE, what="label edit in EdgeX")
        # The next write marks the end of that reconcile (one key is reconciled by one worker at a time).
        await kubectl(control_plane, "apply", "-n", namespace, "-f", "-", docs=[desired("24")])
        await async_wait_for(lambda: actual() == "24", within=DEADLINE, what="Setpoint 24 read back")
        assert [body["Setpoint"] for _, body in writes] == ["21", "23", "24"]


async def _labels(md: CoreMetadataClient, name: str) -> bool:
    return (await md.get_device(name)).labels == ["floor-3"]
