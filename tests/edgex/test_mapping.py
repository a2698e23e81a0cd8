"""CR <-> EdgeX DTO mapping: names and ownership as OpenYurt's yurt-iot-dock maps them, number and state
conventions, round trips both ways (also through core-metadata), and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.edgex.helpers import device, service, unique
from yurt_iot.api.iot import EDGEX_OBJECT_NAME_LABEL, Device, DeviceProfile, DeviceService, edge_name
from yurt_iot.iot.edgex import CoreMetadataClient, mapping
from yurt_iot.iot.edgex.dtos import AutoEvent
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.waiting import async_test

POOL, NAMESPACE = "hangzhou", "factory"


def device_cr(name: str = "hangzhou-boiler", **spec: Any) -> Device:
    return Device.model_validate(
        {
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "serviceName": "device-modbus",
                "profileName": "boiler-profile",
                "notify": True,
                "nodePool": POOL,
                "managed": True,
                "protocols": {"modbus-tcp": {"Address": "10.0.0.7", "Port": "502", "UnitID": "3"}},
                **spec,
            },
        }
    )


def profile_cr(**properties: str) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "metadata": {"name": "hangzhou-boiler-profile", "namespace": NAMESPACE},
            "spec": {
                "nodePool": POOL,
                "manufacturer": "Acme",
                "deviceResources": [
                    {
                        "name": "Pressure",
                        "description": "boiler pressure",
                        "isHidden": False,
                        "attributes": {"primaryTable": "HOLDING_REGISTERS", "startingAddress": 4, "isByteSwap": True},
                        "properties": {"valueType": "Float32", "readWrite": "RW", "units": "bar", **properties},
                    }
                ],
                "deviceCommands": [
                    {
                        "name": "All",
                        "isHidden": False,
                        "readWrite": "R",
                        "resourceOperations": [{"deviceResource": "Pressure", "defaultValue": ""}],
                    }
                ],
            },
        }
    )


def test_a_device_cr_becomes_the_edgex_device_it_asks_for() -> None:
    cr = device_cr(labels=["hall-3"], location="boiler room", adminState="LOCKED")
    cr.metadata.labels = {EDGEX_OBJECT_NAME_LABEL: "Boiler_1"}

    dto = mapping.device_to_edgex(cr)

    assert dto.name == "Boiler_1"  # the EdgeX name from the label, not the CR name
    assert (dto.service_name, dto.profile_name) == ("device-modbus", "boiler-profile")
    assert (dto.admin_state, dto.operating_state) == ("LOCKED", "UNKNOWN")  # unset operatingState: UNKNOWN
    assert (dto.labels, dto.location) == (["hall-3"], "boiler room")
    assert dto.protocols == {"modbus-tcp": {"Address": "10.0.0.7", "Port": "502", "UnitID": "3"}}
    assert dto.id is None
    assert "notify" not in dto.to_json()


def test_a_device_update_names_the_edgex_device_and_its_id() -> None:
    cr = Device.model_validate(
        {**device_cr().to_dict(), "status": {"edgeId": "0c9d-uuid", "adminState": "UNLOCKED"}}
        | {"metadata": {"name": "hangzhou-boiler-1", "labels": {EDGEX_OBJECT_NAME_LABEL: "Boiler_1"}}}
    )
    cr.spec.admin_state = "LOCKED"

    update = mapping.device_update(cr).to_json()

    assert (update["name"], update["id"], update["adminState"]) == ("Boiler_1", "0c9d-uuid", "LOCKED")
    assert (update["description"], update["labels"]) == ("", [])  # cleared in EdgeX, not left as they were
    assert update["protocols"] == {"modbus-tcp": {"Address": "10.0.0.7", "Port": "502", "UnitID": "3"}}
    assert "created" not in update


def test_an_edge_discovered_device_becomes_an_unmanaged_cr_named_after_the_pool() -> None:
    edgex_device = device("Boiler_West", "device-modbus", "boiler-profile", labels=["hall-3"], id="0c9d-uuid")
    edgex_device.protocols = {"modbus-tcp": {"Address": "10.0.0.7", "Port": 502, "UnitID": 3, "Timeout": 1.5}}
    edgex_device.location = {"building": 7}
    edgex_device.auto_events = [AutoEvent(interval="10s", source_name="Pressure", on_change=True)]

    cr = mapping.device_from_edgex(edgex_device, pool=POOL, namespace=NAMESPACE)

    assert (cr.metadata.name, cr.metadata.namespace) == ("hangzhou-boiler-west", NAMESPACE)
    assert cr.metadata.labels == {EDGEX_OBJECT_NAME_LABEL: "Boiler_West"}
    assert edge_name(cr) == "Boiler_West"
    assert (cr.spec.managed, cr.spec.node_pool, cr.spec.notify) == (False, POOL, False)
    assert cr.spec.protocols == {"modbus-tcp": {"Address": "10.0.0.7", "Port": "502", "UnitID": "3", "Timeout": "1.5"}}
    assert cr.spec.location == '{"building": 7}'  # OpenYurt panics on a non-string location
    assert cr.status is not None
    assert (cr.status.edge_id, cr.status.admin_state, cr.status.operating_state) == ("0c9d-uuid", "UNLOCKED", "UNKNOWN")
    back = mapping.device_to_edgex(cr)
    assert (back.name, back.service_name, back.profile_name, back.labels) == (
        "Boiler_West",
        "device-modbus",
        "boiler-profile",
        ["hall-3"],
    )
    assert back.auto_events == edgex_device.auto_events


def test_a_device_without_a_profile_cannot_become_a_cr() -> None:
    with pytest.raises(ValueError, match="profileName"):
        mapping.device_from_edgex(device("Loose", "svc", None), pool=POOL, namespace=NAMESPACE)


def test_device_services_map_both_ways() -> None:
    cr = DeviceService.model_validate(
        {
            "metadata": {"name": "hangzhou-device-modbus", "labels": {EDGEX_OBJECT_NAME_LABEL: "device-modbus"}},
            "spec": {"baseAddress": "http://modbus:59901", "labels": ["modbus"], "managed": True},
            "status": {"edgeId": "5e1f-uuid"},
        }
    )

    dto = mapping.device_service_to_edgex(cr)
    assert (dto.name, dto.base_address, dto.admin_state, dto.id) == (
        "device-modbus",
        "http://modbus:59901",
        "UNLOCKED",
        "5e1f-uuid",
    )
    assert mapping.device_service_update(cr).to_json()["name"] == "device-modbus"

    back = mapping.device_service_from_edgex(service("device-modbus", "http://modbus:59901"), pool=POOL, namespace="x")
    assert back.metadata.name == "hangzhou-device-modbus"
    assert (back.spec.base_address, back.spec.managed, back.spec.node_pool) == ("http://modbus:59901", False, POOL)


def test_profile_numbers_become_edgex_numbers_and_come_back_as_the_same_strings() -> None:
    cr = profile_cr(minimum="-40", maximum="250.5", scale="0.1", offset="3", mask="0xFF00", shift="-8", base="2")

    dto = mapping.device_profile_to_edgex(cr)

    assert dto.name == "hangzhou-boiler-profile"
    assert dto.device_resources is not None
    props = dto.device_resources[0].properties
    assert (props.minimum, props.maximum, props.scale, props.offset, props.base) == (-40, 250.5, 0.1, 3, 2)
    assert (props.mask, props.shift) == (0xFF00, -8)
    assert dto.device_resources[0].attributes == {
        "primaryTable": "HOLDING_REGISTERS",
        "startingAddress": 4,
        "isByteSwap": True,
    }
    assert dto.device_commands is not None
    assert dto.device_commands[0].resource_operations[0].default_value is None

    back = mapping.device_profile_from_edgex(dto, pool=POOL, namespace=NAMESPACE)
    assert back.spec.device_resources is not None
    assert back.spec.device_resources[0].properties.mask == str(0xFF00)  # the value, written in decimal
    expected = cr.spec.model_copy(deep=True)
    assert expected.device_resources is not None
    expected.device_resources[0].properties.mask = str(0xFF00)
    assert back.spec == expected
    assert mapping.device_profile_to_edgex(back) == dto


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scale": "a lot"}, r"spec\.deviceResources\[0\]\.properties\.scale"),
        ({"shift": "1.5"}, r"spec\.deviceResources\[0\]\.properties\.shift"),
        ({"value_type": None}, r"spec\.deviceResources\[0\]\.properties\.valueType"),
    ],
)
def test_bad_profile_input_is_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    cr = profile_cr()
    assert cr.spec.device_resources is not None
    resource = cr.spec.device_resources[0]
    # model_copy skips validation: this is input the CRD schema would refuse, reaching the mapping anyway
    resource.properties = resource.properties.model_copy(update=change)

    with pytest.raises(ValueError, match=field):
        mapping.device_profile_to_edgex(cr)


def test_a_command_operation_without_a_resource_is_refused() -> None:
    cr = profile_cr()
    assert cr.spec.device_commands is not None
    cr.spec.device_commands[0].resource_operations[0].device_resource = None

    with pytest.raises(ValueError, match=r"spec\.deviceCommands\[0\]\.resourceOperations\[0\]\.deviceResource"):
        mapping.device_profile_to_edgex(cr)


def test_cr_names_of_edge_objects() -> None:
    assert mapping.cr_name("pool-a", "Modbus_TCP_Device") == "pool-a-modbus-tcp-device"


@async_test(30.0)
async def test_crs_survive_a_round_trip_through_core_metadata(edgex: EdgeX) -> None:
    svc, prof, dev = unique("device-modbus"), unique("Boiler_Profile"), unique("Boiler")
    async with CoreMetadataClient(edgex.metadata_url) as md:
        await md.add_device_services([service(svc)])
        profile_in = profile_cr(scale="0.1", mask="0xFF")
        profile_in.metadata.labels = {EDGEX_OBJECT_NAME_LABEL: prof}
        device_in = device_cr(
            labels=["hall-3"], adminState="UNLOCKED", operatingState="UP", serviceName=svc, profileName=prof
        )
        device_in.metadata.labels = {EDGEX_OBJECT_NAME_LABEL: dev}
        for [result] in (
            await md.add_device_profiles([mapping.device_profile_to_edgex(profile_in)]),
            await md.add_devices([mapping.device_to_edgex(device_in)], bypass_validation=True),
        ):
            result.raise_for_status()

        profile_out = mapping.device_profile_from_edgex(await md.get_device_profile(prof), pool=POOL, namespace="x")
        device_out = mapping.device_from_edgex(await md.get_device(dev), pool=POOL, namespace="x")

        locked = device_out.model_copy(deep=True)
        locked.spec.admin_state = "LOCKED"
        [patched] = await md.update_devices([mapping.device_update(locked)], bypass_validation=True)
        patched.raise_for_status()
        assert (await md.get_device(dev)).admin_state == "LOCKED"

    assert profile_out.spec.device_resources is not None
    assert profile_out.spec.device_resources[0].properties.mask == "255"
    assert mapping.device_profile_to_edgex(profile_out).device_resources == (
        mapping.device_profile_to_edgex(profile_in).device_resources
    )
    assert edge_name(device_out) == dev
    spec_in = device_in.spec.model_dump(exclude={"managed", "notify"})
    assert device_out.spec.model_dump(exclude={"managed", "notify"}) == spec_in
