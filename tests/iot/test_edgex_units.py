"""The pure parts of the EdgeX sync: conditions, drift between a CR and EdgeX, system event envelopes."""

from __future__ import annotations

import base64
import json

from yurt_iot.iot.edgex import dtos
from yurt_iot.iot.edgex.bus import decode_event
from yurt_iot.iot.edgex.kinds import edge_kinds, normalized
from yurt_iot.iot.edgex.reconcile import with_condition


def test_a_condition_moves_its_transition_time_only_when_its_status_flips() -> None:
    first = with_condition(None, "DeviceSynced", True, "Synced", "")
    assert first[0]["status"] == "True" and first[0]["lastTransitionTime"]
    assert with_condition(first, "DeviceSynced", True, "Synced", "") == first  # unchanged: no status write
    stamped = [{**first[0], "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    same_status = with_condition(stamped, "DeviceSynced", True, "Synced", "again")
    assert same_status[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z" and same_status[0]["message"] == "again"
    flipped = with_condition(stamped, "DeviceSynced", False, "EdgeXUnreachable", "refused")
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z" and len(flipped) == 1
    both = with_condition(flipped, "DeviceManaging", True, "Managed", "")
    assert [c["type"] for c in both] == ["DeviceSynced", "DeviceManaging"]


def test_empty_and_absent_values_are_no_drift() -> None:
    assert normalized({"description": "", "labels": [], "x": None, "protocols": {}}) is None
    assert normalized({"isHidden": False, "a": {"b": ""}}) == {"isHidden": False}


def test_device_drift_ignores_the_operating_state_and_an_unset_admin_state() -> None:
    _, _, device = edge_kinds()
    edge = dtos.Device(
        name="room-1", service_name="modbus", profile_name="thermostat", admin_state="LOCKED",
        operating_state="UP", protocols={"modbus-tcp": {"Address": "127.0.0.1", "UnitID": "1"}},
    )  # fmt: skip
    edge_spec = device.spec_from_edge(edge, "hangzhou", "iot")
    cr_spec = {
        "serviceName": "modbus", "profileName": "thermostat", "operatingState": "DOWN", "description": "",
        "protocols": {"modbus-tcp": {"Address": "127.0.0.1", "UnitID": "1"}},
    }  # fmt: skip
    assert device.drift(cr_spec, edge_spec, device.pushed) == []
    assert device.drift({**cr_spec, "adminState": "UNLOCKED"}, edge_spec, device.pushed) == ["adminState"]
    moved = {**cr_spec, "protocols": {"modbus-tcp": {"Address": "127.0.0.2", "UnitID": "1"}}}
    assert device.drift(moved, edge_spec, device.pushed) == ["protocols"]


def test_a_profile_is_edge_owned_only_when_it_came_from_edgex() -> None:
    _, profile, _ = edge_kinds()
    label = {"yurt-iot-dock/edgex-object.name": "Thermo_1"}
    discovered = {"metadata": {"name": "hangzhou-thermo-1", "labels": label}, "spec": {"nodePool": "hangzhou"}}
    renamed = {"metadata": {"name": "thermostat", "labels": label}, "spec": {"nodePool": "hangzhou"}}
    assert profile.edge_owned(discovered)
    assert not profile.edge_owned(renamed)  # the label only maps a cloud-made CR to its EdgeX name


def test_system_events_are_read_from_edgex_4_and_edgex_3_envelopes() -> None:
    event = {"type": "device", "action": "add", "details": {"name": "room-1"}}
    assert decode_event(json.dumps({"payload": event}).encode()) == event
    v3 = base64.b64encode(json.dumps(event).encode()).decode()
    assert decode_event(json.dumps({"payload": v3}).encode()) == event
    assert decode_event(b"not json") is None
    assert decode_event(json.dumps({"payload": "not base64!"}).encode()) is None
