"""The native backend's status rules that keep writes rare, and how a DeviceService selects the backend."""

from __future__ import annotations

from yurt_iot.iot.native import is_native
from yurt_iot.iot.native.status import ConditionValue, coarse_last_connected, merge_conditions, properties_patch

MINUTE = 60_000


def test_last_connected_moves_with_the_state_or_once_a_resolution_not_with_every_reading() -> None:
    stored = 1_000_000
    assert coarse_last_connected(stored, stored + 500, state_changed=False, resolution_ms=MINUTE) == stored
    assert coarse_last_connected(stored, stored + 500, state_changed=True, resolution_ms=MINUTE) == stored + 500
    assert coarse_last_connected(stored, stored + MINUTE, state_changed=False, resolution_ms=MINUTE) == stored + MINUTE
    assert coarse_last_connected(None, 5, state_changed=False, resolution_ms=MINUTE) == 5
    assert coarse_last_connected(stored, None, state_changed=True, resolution_ms=MINUTE) == stored


def test_an_unchanged_condition_keeps_its_transition_time_and_others_conditions_are_kept() -> None:
    foreign = {"type": "Custom", "status": "True", "reason": "Theirs", "lastTransitionTime": "2020-01-01T00:00:00Z"}
    first = merge_conditions([foreign], [ConditionValue("DeviceManaging", True, "DesiredValuesWritten")])
    assert first[0] == foreign
    again = merge_conditions(first, [ConditionValue("DeviceManaging", True, "DesiredValuesWritten")])
    assert again == first  # compares equal: no status write

    since = {**first[1], "lastTransitionTime": "2021-01-01T00:00:00Z"}
    failed = merge_conditions([foreign, since], [ConditionValue("DeviceManaging", False, "WriteFailed", "setpoint")])
    managing = failed[1]
    assert (managing["status"], managing["reason"], managing["message"]) == ("False", "WriteFailed", "setpoint")
    assert managing["lastTransitionTime"] != "2021-01-01T00:00:00Z"


def test_properties_no_longer_desired_leave_the_status() -> None:
    current = {"old": {"name": "old", "actualValue": "1"}, "kept": {"name": "kept", "actualValue": "2"}}
    assert properties_patch(current, {"kept": "3"}) == {"old": None, "kept": {"name": "kept", "actualValue": "3"}}
    assert properties_patch(None, {}) is None


def test_a_native_base_address_selects_the_backend() -> None:
    assert is_native({"spec": {"baseAddress": "native://hangzhou"}})
    assert is_native({"spec": {"baseAddress": "native://"}})
    assert not is_native({"spec": {"baseAddress": "http://edgex-device-modbus:59901"}})
    assert not is_native({"spec": {}})
