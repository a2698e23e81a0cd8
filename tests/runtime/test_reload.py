"""Live reload of manifest files: only the devices a change touches restart, the others keep polling."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.runtime.test_gateway import Events
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.reload import ManifestReloader
from yurt_iot.sim.modbus import ModbusSimulator, input_register_value
from yurt_iot.testing.waiting import async_test, async_wait_for

PERIOD = 0.2


def manifests(name: str, sim: ModbusSimulator, unit: int, *, table: str, scale: str, desired: str | None) -> str:
    """A profile and a device of one resource `level`, polled every PERIOD."""
    profile = {
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "DeviceProfile", "metadata": {"name": f"{name}-profile"},
        "spec": {"deviceResources": [{
            "name": "level", "description": "a level", "isHidden": False,
            "attributes": {"primaryTable": table, "startingAddress": 0, "rawType": "Uint16"},
            "properties": {"valueType": "Float32", "readWrite": "RW", "scale": scale},
        }]},
    }  # fmt: skip
    device: dict[str, Any] = {
        "apiVersion": "iot.openyurt.io/v1alpha1", "kind": "Device", "metadata": {"name": name},
        "spec": {
            "serviceName": "device-modbus", "profileName": f"{name}-profile", "notify": False,
            "protocols": {"modbus-tcp": {"Address": sim.host, "Port": str(sim.port), "UnitID": str(unit)}},
            "autoEvents": [{"sourceName": "level", "interval": f"{int(PERIOD * 1000)}ms"}],
        },
    }  # fmt: skip
    if desired is not None:
        device["spec"]["deviceProperties"] = {"level": {"name": "level", "desiredValue": desired}}
    return yaml.safe_dump_all([profile, device])


def levels(events: Events, device: str) -> list[float]:
    return [float(e["readings"][0]["value"]) for e in events.of(device)]


def largest_gap(events: Events, device: str) -> float:
    origins = [e["origin"] / 1e9 for e in events.of(device)]
    return max(b - a for a, b in itertools.pairwise(origins))


@async_test(60)
async def test_a_changed_file_restarts_its_device_only_and_the_others_poll_without_a_gap(tmp_path: Path) -> None:
    events = Events()
    async with ModbusSimulator(units=(1, 2), table_size=10, update_period=None) as sim:
        (tmp_path / "a.yaml").write_text(manifests("a", sim, 1, table="HOLDING_REGISTERS", scale="0.1", desired="21.5"))
        (tmp_path / "b.yaml").write_text(manifests("b", sim, 2, table="INPUT_REGISTERS", scale="1", desired=None))
        gateway = Gateway(events)
        reloader = ManifestReloader(gateway, [tmp_path], interval=0.5)
        await reloader.apply(await reloader.load())
        watching = asyncio.create_task(reloader.watch())
        try:
            # the desired value was written at start: register 215 read back through scale 0.1
            await async_wait_for(lambda: levels(events, "a")[-1:] == [21.5], within=3, what="a reads 21.5")
            await async_wait_for(lambda: len(events.of("b")) >= 5, within=3, what="b polling")
            b_runner = gateway.runner("b")

            (tmp_path / "a.yaml").write_text(manifests("a", sim, 1, table="HOLDING_REGISTERS", scale="1", desired=None))
            edited = asyncio.get_running_loop().time()
            await async_wait_for(lambda: levels(events, "a")[-1:] == [215.0], within=2, what="a reads with scale 1")
            assert asyncio.get_running_loop().time() - edited < 2.0
            polls_after_edit = len(events.of("b")) + 5
            await async_wait_for(lambda: len(events.of("b")) >= polls_after_edit, within=3, what="b polls on")

            assert gateway.runner("b") is b_runner  # never restarted
            assert set(levels(events, "b")) == {float(input_register_value(2, 0, 0))}
            assert largest_gap(events, "b") < 2.5 * PERIOD
            assert reloader.reloads == 1
        finally:
            watching.cancel()
            await gateway.close()


@async_test(60)
async def test_devices_come_and_go_with_their_files_and_a_bad_file_changes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yurt_iot.runtime.reload")
    events = Events()
    async with ModbusSimulator(units=(1, 2), table_size=10, update_period=None) as sim:
        (tmp_path / "a.yaml").write_text(manifests("a", sim, 1, table="INPUT_REGISTERS", scale="1", desired=None))
        gateway = Gateway(events)
        reloader = ManifestReloader(gateway, [tmp_path], interval=0.2)
        await reloader.apply(await reloader.load())
        watching = asyncio.create_task(reloader.watch())
        try:
            (tmp_path / "b.yaml").write_text(manifests("b", sim, 2, table="INPUT_REGISTERS", scale="1", desired=None))
            await async_wait_for(lambda: events.of("b"), within=2, what="b added and polling")

            a_runner = gateway.runner("a")
            good = (tmp_path / "a.yaml").read_text()
            (tmp_path / "a.yaml").write_text(good.replace("interval: 200ms", "interval: every-now-and-then"))
            await async_wait_for(lambda: "last good configuration stays" in caplog.text, within=2, what="error logged")
            assert "a.yaml:1 Device/a: spec.autoEvents[0].interval: Invalid value" in caplog.text
            assert gateway.runner("a") is a_runner and set(gateway.devices) == {"a", "b"}

            (tmp_path / "a.yaml").write_text(good)
            (tmp_path / "b.yaml").unlink()
            await async_wait_for(lambda: set(gateway.devices) == {"a"}, within=2, what="b removed")
            assert gateway.runner("a") is a_runner  # its file is as it was: not restarted
            stopped_at, later = len(events.of("b")), len(events.of("a")) + 3
            await async_wait_for(lambda: len(events.of("a")) >= later, within=3, what="a polls on")
            assert len(events.of("b")) == stopped_at
        finally:
            watching.cancel()
            await gateway.close()
