"""The core-command client against EdgeX core-command (the contract double), which forwards reads and writes
to the device's service: here a minimal device service speaking the device-service REST API, or none at all."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from tests.edgex.helpers import device, profile, service, unique
from yurt_iot.iot.edgex import CoreCommandClient, CoreMetadataClient, Locked, NotFound, Unavailable
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.edgex.http import Request, Response, json_response, start_server
from yurt_iot.testing.ports import LOOPBACK, free_port
from yurt_iot.testing.waiting import async_test

TEST_TIMEOUT = 30.0


@contextlib.asynccontextmanager
async def device_service(locked: set[str]) -> AsyncIterator[tuple[str, list[Request]]]:
    """A device service answering core-command's forwarded requests: every read gives Temperature 23.5 (as
    EdgeX encodes floats), every write 200, and a device in `locked` 423. Yields its base address and the
    requests it got."""
    received: list[Request] = []

    async def handle(request: Request) -> Response:
        received.append(request)
        _, _, _, _, _, name, command = request.path.split("/")
        if name in locked:
            return json_response(423, {"apiVersion": "v3", "message": f"device {name} is locked", "statusCode": 423})
        if request.method == "PUT":
            return json_response(200, {"apiVersion": "v3", "statusCode": 200})
        if request.query.get("ds-returnevent") == "false":
            return json_response(200, {"apiVersion": "v3", "statusCode": 200})
        reading = {"deviceName": name, "resourceName": "Temperature", "valueType": "Float32", "value": "2.35e+01"}
        event = {"deviceName": name, "sourceName": command, "origin": 1_700_000_000_000_000_000, "readings": [reading]}
        return json_response(200, {"apiVersion": "v3", "statusCode": 200, "event": event})

    port = free_port()
    server = await start_server(handle, LOOPBACK, port)
    try:
        yield f"http://{LOOPBACK}:{port}", received
    finally:
        server.close()


async def _device_of(md: CoreMetadataClient, base_address: str) -> str:
    svc, prof, name = unique("svc"), unique("prof"), unique("dev")
    for [result] in (
        await md.add_device_services([service(svc, base_address)]),
        await md.add_device_profiles([profile(prof)]),
        await md.add_devices([device(name, svc, prof)], bypass_validation=True),
    ):
        result.raise_for_status()
    return name


@async_test(TEST_TIMEOUT)
async def test_core_command_lists_the_visible_resources_and_commands(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md, CoreCommandClient(edgex.command_url) as cmd:
        name = await _device_of(md, "http://127.0.0.1:9")

        commands = {c.name: c for c in await cmd.device_commands(name)}

    assert set(commands) == {"Temperature", "Setpoint", "Climate"}  # Raw is hidden
    assert (commands["Temperature"].get, commands["Temperature"].set) == (True, False)
    assert (commands["Setpoint"].get, commands["Setpoint"].set) == (True, True)
    assert commands["Climate"].path == f"/api/v3/device/name/{name}/Climate"
    assert commands["Climate"].url == edgex.command_url
    assert [p.resource_name for p in commands["Climate"].parameters or []] == ["Temperature", "Setpoint"]


@async_test(TEST_TIMEOUT)
async def test_reads_and_writes_travel_through_core_command_to_the_device_service(edgex: EdgeX) -> None:
    locked: set[str] = set()
    async with (
        device_service(locked) as (base_address, received),
        CoreMetadataClient(edgex.metadata_url) as md,
        CoreCommandClient(edgex.command_url) as cmd,
    ):
        name = await _device_of(md, base_address)

        event = await cmd.read(name, "Temperature")
        assert event is not None
        assert (event.device_name, event.source_name) == (name, "Temperature")
        assert [(r.resource_name, r.value_type, r.value) for r in event.readings] == [
            ("Temperature", "Float32", "2.35e+01")
        ]
        assert received[-1].query == {"ds-pushevent": "false", "ds-returnevent": "true"}

        assert await cmd.read(name, "Climate", push_event=True, return_event=False) is None
        assert received[-1].query == {"ds-pushevent": "true", "ds-returnevent": "false"}

        await cmd.write(name, "Setpoint", {"Setpoint": "21"})
        assert (received[-1].method, json.loads(received[-1].body)) == ("PUT", {"Setpoint": "21"})

        locked.add(name)  # core-command forwards anyway; the device service refuses
        with pytest.raises(Locked) as refused:
            await cmd.read(name, "Temperature")
        assert refused.value.status_code == 423
        assert "locked" in refused.value.message


@async_test(TEST_TIMEOUT)
async def test_a_read_with_no_device_service_running_is_unavailable(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md, CoreCommandClient(edgex.command_url) as cmd:
        name = await _device_of(md, f"http://127.0.0.1:{free_port()}")  # nothing listens there

        with pytest.raises(Unavailable) as unavailable:
            await cmd.read(name, "Temperature")

    assert unavailable.value.status_code == 503
    assert "failed to send a http request" in unavailable.value.message


@async_test(TEST_TIMEOUT)
async def test_unknown_devices_and_commands_are_not_found(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md, CoreCommandClient(edgex.command_url) as cmd:
        name = await _device_of(md, "http://127.0.0.1:9")
        with pytest.raises(NotFound):
            await cmd.read(unique("ghost"), "Temperature")
        with pytest.raises(NotFound):
            await cmd.read(name, "NoSuchCommand")
        with pytest.raises(NotFound):
            await cmd.device_commands(unique("ghost"))
