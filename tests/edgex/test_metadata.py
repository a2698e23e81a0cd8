"""The core-metadata client against EdgeX core-metadata (the contract double of yurt_iot/testing/edgex, over real
sockets): batches with per-item results, reads, paging, updates, deletes, profile files, and EdgeX 4's device
validation on the message bus."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.edgex.conftest import REQUEST_TIMEOUT_S
from tests.edgex.helpers import DEADLINE, bus_peer, device, profile, service, unique
from yurt_iot.iot.edgex import (
    Conflict,
    CoreMetadataClient,
    EdgeXError,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from yurt_iot.iot.edgex.dtos import DeviceProfile, DeviceServiceUpdate, DeviceUpdate
from yurt_iot.testing.edgex import EdgeX
from yurt_iot.testing.mosquitto import Mosquitto
from yurt_iot.testing.ports import free_port
from yurt_iot.testing.waiting import async_test, async_wait_for

TEST_TIMEOUT = 30.0


async def _registered(md: CoreMetadataClient) -> tuple[str, str]:
    """A fresh service and profile; returns their names."""
    svc, prof = unique("svc"), unique("prof")
    [added] = await md.add_device_services([service(svc)])
    added.raise_for_status()
    [added] = await md.add_device_profiles([profile(prof)])
    added.raise_for_status()
    return svc, prof


@async_test(TEST_TIMEOUT)
async def test_service_profile_and_device_are_created_and_read_back(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        await md.ping()
        svc, prof = unique("svc"), unique("prof")
        [svc_result] = await md.add_device_services([service(svc, "http://127.0.0.1:59901", labels=["modbus"])])
        [prof_result] = await md.add_device_profiles([profile(prof)])
        name = unique("dev")
        [dev_result] = await md.add_devices([device(name, svc, prof, labels=["hall"])], bypass_validation=True)
        assert [r.status_code for r in (svc_result, prof_result, dev_result)] == [201, 201, 201]

        got_service = await md.get_device_service(svc)
        assert (got_service.id, got_service.base_address, got_service.labels) == (
            svc_result.id,
            "http://127.0.0.1:59901",
            ["modbus"],
        )
        got_profile = await md.get_device_profile(prof)
        assert got_profile.id == prof_result.id
        expected = profile(prof).to_json()
        assert {k: v for k, v in got_profile.to_json().items() if k in expected} == expected

        got = await md.get_device(name)
        assert got.id == dev_result.id
        assert (got.service_name, got.profile_name, got.labels) == (svc, prof, ["hall"])
        assert got.protocols == {"modbus-tcp": {"Address": "127.0.0.1", "Port": "1502", "UnitID": 1}}
        assert await md.device_exists(name)


@async_test(TEST_TIMEOUT)
async def test_a_batch_reports_each_item_and_one_duplicate_does_not_fail_the_others(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        first, second = unique("svc"), unique("svc")
        results = await md.add_device_services([service(first), service(first), service(second)])

        assert [r.status_code for r in results] == [201, 409, 201]
        assert results[0].ok and results[0].id and results[1].id is None
        assert isinstance(results[1].error, Conflict)
        assert "already exists" in (results[1].message or "")
        with pytest.raises(Conflict):
            results[1].raise_for_status()
        assert {s.name for s in await md.list_device_services()} >= {first, second}


@async_test(TEST_TIMEOUT)
async def test_a_device_naming_a_missing_service_or_profile_fails_alone(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        good, orphan, no_profile = unique("dev"), unique("dev"), unique("dev")
        results = await md.add_devices(
            [device(good, svc, prof), device(orphan, unique("nosvc"), prof), device(no_profile, svc, unique("none"))],
            bypass_validation=True,
        )

        assert [r.status_code for r in results] == [201, 400, 400]
        assert isinstance(results[1].error, InvalidRequest)
        assert "does not exist" in (results[1].message or "")
        assert await md.device_exists(good)
        assert not await md.device_exists(orphan)


@async_test(TEST_TIMEOUT)
async def test_a_contract_violation_refuses_the_whole_batch(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        fine, broken = unique("svc"), unique("svc")
        with pytest.raises(InvalidRequest) as refused:
            await md.add_device_services([service(fine), service(broken, base_address="not a uri")])

        assert refused.value.status_code == 400
        assert "BaseAddress" in refused.value.message
        with pytest.raises(NotFound):
            await md.get_device_service(fine)


@async_test(TEST_TIMEOUT)
async def test_listing_pages_through_more_objects_than_one_page_holds(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        label = unique("batch")
        names = [unique(f"dev{i}") for i in range(7)]
        results = await md.add_devices([device(n, svc, prof, labels=[label]) for n in names], bypass_validation=True)
        assert all(r.ok for r in results)

        listed = await md.list_devices(labels=[label], page_size=3)

        assert [d.name for d in listed] == names  # all of them, each once, in creation order
        assert [d.name for d in await md.list_devices(labels=[label])] == names
        assert await md.list_devices(labels=[unique("nobody")]) == []
        with pytest.raises(ValueError, match="page_size"):
            await md.list_devices(page_size=2000)


@async_test(TEST_TIMEOUT)
async def test_update_changes_only_the_fields_given(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        name = unique("dev")
        [added] = await md.add_devices([device(name, svc, prof, description="before")], bypass_validation=True)
        before = await md.get_device(name)

        [by_name, by_id, missing] = await md.update_devices(
            [
                DeviceUpdate(name=name, admin_state="LOCKED", labels=["moved"]),
                DeviceUpdate(id=added.id, operating_state="DOWN"),
                DeviceUpdate(name=unique("ghost"), admin_state="LOCKED"),
            ],
            bypass_validation=True,
        )

        assert (by_name.status_code, by_id.status_code) == (200, 200)
        assert isinstance(missing.error, NotFound)
        after = await md.get_device(name)
        assert (after.admin_state, after.operating_state, after.labels) == ("LOCKED", "DOWN", ["moved"])
        assert (after.description, after.protocols, after.id) == ("before", before.protocols, before.id)

        [svc_update] = await md.update_device_services([DeviceServiceUpdate(name=svc, admin_state="LOCKED")])
        assert svc_update.ok
        assert (await md.get_device_service(svc)).admin_state == "LOCKED"


@async_test(TEST_TIMEOUT)
async def test_delete_and_what_a_missing_or_still_used_object_answers(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        name = unique("dev")
        await md.add_devices([device(name, svc, prof)], bypass_validation=True)

        with pytest.raises(Conflict):
            await md.delete_device_service(svc)  # the device still uses it
        with pytest.raises(Conflict):
            await md.delete_device_profile(prof)
        await md.delete_device(name)
        with pytest.raises(NotFound) as missing:
            await md.get_device(name)
        assert missing.value.status_code == 404
        assert name in missing.value.message
        assert not await md.device_exists(name)
        with pytest.raises(NotFound):
            await md.delete_device(name)
        await md.delete_device_profile(prof)
        await md.delete_device_service(svc)
        with pytest.raises(NotFound):
            await md.get_device_service(svc)


PROFILE_YAML = """\
name: "{name}"
manufacturer: "Acme"
model: "Y-1"
labels: ["uploaded"]
deviceResources:
  - name: "Humidity"
    isHidden: false
    properties: {{valueType: "Uint16", readWrite: "R", units: "%"}}
"""


@async_test(TEST_TIMEOUT)
async def test_profiles_upload_from_yaml_and_replace_keeping_their_id(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        name = unique("uploaded")
        profile_id = await md.upload_device_profile(PROFILE_YAML.format(name=name))
        assert profile_id

        got = await md.get_device_profile(name)
        assert got.id == profile_id
        assert got.device_resources is not None
        assert got.device_resources[0].properties.units == "%"
        with pytest.raises(Conflict):
            await md.upload_device_profile(PROFILE_YAML.format(name=name))

        replacement = DeviceProfile.model_validate({**got.to_json(), "model": "Y-2"})
        [replaced] = await md.replace_device_profiles([replacement])
        assert replaced.ok
        again = await md.get_device_profile(name)
        assert (again.id, again.model) == (profile_id, "Y-2")


@async_test(TEST_TIMEOUT)
async def test_device_add_is_validated_by_the_device_service_on_the_bus(edgex: EdgeX, mosquitto: Mosquitto) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        accepted, rejected = unique("dev"), unique("bad")

        def decide(envelope: dict[str, object]) -> dict[str, object]:
            payload = envelope["payload"]
            assert isinstance(payload, dict)
            if payload["device"]["name"] == rejected:
                return {"errorCode": 1, "payload": "UnitID out of range"}
            return {"errorCode": 0}

        async with bus_peer(mosquitto, f"edgex/{svc}/validate/device", decide) as requests:
            results = await md.add_devices([device(accepted, svc, prof), device(rejected, svc, prof)])

        assert [r.status_code for r in results] == [201, 500]
        assert type(results[1].error) is EdgeXError
        assert "validation failed: UnitID out of range" in (results[1].message or "")
        assert [envelope["payload"]["device"]["name"] for _, envelope in requests] == [accepted, rejected]
        assert await md.device_exists(accepted)
        assert not await md.device_exists(rejected)


@async_test(TEST_TIMEOUT)
async def test_device_add_without_a_validating_service_times_out_unavailable(edgex: EdgeX) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        name = unique("dev")
        started = time.monotonic()
        with pytest.raises(Unavailable) as unavailable:
            await md.add_devices([device(name, svc, prof)])

        assert unavailable.value.status_code == 503
        assert time.monotonic() - started >= REQUEST_TIMEOUT_S
        [added] = await md.add_devices([device(name, svc, prof)], bypass_validation=True)
        assert added.ok


@async_test(TEST_TIMEOUT)
async def test_device_changes_are_published_as_system_events(edgex: EdgeX, mosquitto: Mosquitto) -> None:
    async with CoreMetadataClient(edgex.metadata_url) as md:
        svc, prof = await _registered(md)
        name = unique("dev")
        async with bus_peer(mosquitto, f"edgex/system-events/core-metadata/device/+/{svc}/#") as events:
            await md.add_devices([device(name, svc, prof)], bypass_validation=True)
            await md.update_devices([DeviceUpdate(name=name, admin_state="LOCKED")], bypass_validation=True)
            await md.delete_device(name)
            await async_wait_for(lambda: len(events) == 3, within=DEADLINE, what="three system events")

        assert [topic for topic, _ in events] == [
            f"edgex/system-events/core-metadata/device/{action}/{svc}/{prof}" for action in ("add", "update", "delete")
        ]
        assert [e["payload"]["action"] for _, e in events] == ["add", "update", "delete"]
        assert events[1][1]["payload"]["details"]["adminState"] == "LOCKED"


@async_test(TEST_TIMEOUT)
async def test_without_a_bus_an_unvalidated_device_add_gets_no_answer() -> None:
    with EdgeX() as no_bus:  # EdgeX 4 with MESSAGEBUS_DISABLED=true
        async with CoreMetadataClient(no_bus.metadata_url) as md:
            svc, prof = await _registered(md)
            with pytest.raises(Unavailable) as dropped:
                await md.add_devices([device(unique("dev"), svc, prof)])
            assert dropped.value.status_code is None
            [added] = await md.add_devices([device(unique("dev"), svc, prof)], bypass_validation=True)
            assert added.ok


@async_test(TEST_TIMEOUT)
async def test_an_unreachable_core_metadata_is_unavailable() -> None:
    async with CoreMetadataClient(f"http://127.0.0.1:{free_port()}", timeout=2.0) as md:
        with pytest.raises(Unavailable) as unavailable:
            await md.get_device("anything")
    assert unavailable.value.status_code is None
    assert isinstance(unavailable.value.__cause__, httpx.ConnectError)
