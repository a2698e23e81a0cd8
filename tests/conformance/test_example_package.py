"""The example third-party driver package (examples/driver-scpi), installed with pip as any driver would be.

Its own conformance tests run here, in the main test run (they live in the package, which is not importable as a
package of this repository, so they are loaded from their file); and the gateway finds and runs the driver through
its entry point only, knowing nothing else about it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.runtime.test_gateway import Events, command, profile
from yurt_iot.api.iot import Device
from yurt_iot.runtime import registry
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.testing.ports import stable_free_port
from yurt_iot.testing.waiting import async_test, async_wait_for

PACKAGE = Path(__file__).resolve().parents[2] / "examples" / "driver-scpi"


def _load(path: Path) -> ModuleType:
    if importlib.util.find_spec("yurt_iot_driver_scpi") is None:
        pytest.fail(f"the example driver is not installed: pip install -e {PACKAGE} (scripts/test does)", pytrace=False)
    spec = importlib.util.spec_from_file_location("yurt_iot_driver_scpi_conformance", path)
    assert spec is not None and spec.loader is not None
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TestScpiDriverConformance = _load(PACKAGE / "tests" / "test_scpi_conformance.py").TestScpiDriverConformance


def test_the_registry_finds_the_installed_package_by_its_protocol_name() -> None:
    entry = registry.available_protocols()["scpi"]
    assert entry.value == "yurt_iot_driver_scpi:ScpiDriver"
    cls = registry.driver_class("scpi")
    assert Path(sys.modules[cls.__module__].__file__ or "").is_relative_to(PACKAGE)  # the example, editable


@async_test(30.0)
async def test_a_gateway_runs_a_device_of_the_example_protocol() -> None:
    from yurt_iot_driver_scpi.simulator import ScpiSimulator

    simulator = ScpiSimulator({"MEAS:TEMP": "21.5", "SOUR:VOLT": "0"}, port=stable_free_port())
    await simulator.start()
    resources = [
        {"name": name, "description": name, "isHidden": False, "attributes": {"command": header},
         "properties": {"valueType": "Float32", "readWrite": rw, "units": units}}
        for name, header, rw, units in [("Temperature", "MEAS:TEMP", "R", "degC"), ("Voltage", "SOUR:VOLT", "RW", "V")]
    ]  # fmt: skip
    device = Device.model_validate({
        "metadata": {"name": "psu-1"},
        "spec": {"serviceName": "device-scpi", "profileName": "psu", "notify": False,
                 "protocols": {"scpi": {"Address": simulator.host, "Port": str(simulator.port), "Timeout": "500ms"}},
                 "autoEvents": [{"sourceName": "Both", "interval": "50ms"}]},
    })  # fmt: skip
    events = Events()
    gateway = Gateway(events)
    try:
        runner = await gateway.apply(device, profile("psu", resources, [command("Both", ["Temperature", "Voltage"])]))
        await runner.write({"Voltage": "3.3"})
        assert simulator.values["SOUR:VOLT"] == "3.3"

        def readings() -> list[dict[str, str]]:
            return [{r["resourceName"]: r["value"] for r in e["readings"]} for e in events.of("psu-1")]

        await async_wait_for(lambda: {"Temperature": "2.15e+01", "Voltage": "3.3e+00"} in readings(), within=10.0,
                             what="an event with the written voltage")  # fmt: skip
        assert runner.state == "UP"
    finally:
        await gateway.close()
        await simulator.stop()
