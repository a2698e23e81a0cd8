"""Event payloads and topics, as an EdgeX consumer parses them."""

from __future__ import annotations

import base64
import json
import uuid

from yurt_iot.api.iot import ResourceProperties
from yurt_iot.runtime.events import EventEncoder
from yurt_iot.runtime.values import ValueSpec


def spec(name: str, value_type: str, **properties: str) -> ValueSpec:
    return ValueSpec.from_properties(name, ResourceProperties.model_validate({"valueType": value_type, **properties}))


SPECS = {
    "Temperature": spec("Temperature", "Float32", scale="0.1", units="degC"),
    "Count": spec("Count", "Uint32"),
    "Running": spec("Running", "Bool"),
    "Label": spec("Label", "String"),
    "Blob": spec("Blob", "Binary", mediaType="image/png"),
}


def encoder() -> EventEncoder:
    return EventEncoder(service="device-modbus", profile="thermostat", device="room-1", resources=SPECS)


def test_topic_is_edgex_scheme() -> None:
    assert encoder().topic("Climate") == "edgex/events/device/device-modbus/thermostat/room-1/Climate"
    custom = EventEncoder(service="s", profile="p", device="d", resources=SPECS, topic_prefix="site-a/events")
    assert custom.topic("x") == "site-a/events/s/p/d/x"


def test_event_json_matches_edgex_event_shape() -> None:
    origin = 1_795_000_000_123_456_789
    values = [
        ("Temperature", SPECS["Temperature"].to_value(235)),
        ("Count", 4_000_000_000),
        ("Running", True),
        ("Label", 'say "hi"\n'),
        ("Blob", b"\x89PNG"),
    ]
    event = json.loads(encoder().encode("Climate", origin, values))
    assert {k: event[k] for k in ("apiVersion", "deviceName", "profileName", "sourceName", "origin")} == {
        "apiVersion": "v3",
        "deviceName": "room-1",
        "profileName": "thermostat",
        "sourceName": "Climate",
        "origin": origin,
    }
    uuid.UUID(event["id"])
    readings = event["readings"]
    assert [r["resourceName"] for r in readings] == [name for name, _ in values]
    assert all(r["origin"] == origin and r["deviceName"] == "room-1" and r["profileName"] == "thermostat"
               for r in readings)  # fmt: skip
    assert len({r["id"] for r in readings} | {event["id"]}) == len(readings) + 1
    for reading in readings:
        uuid.UUID(reading["id"])
    temperature, count, running, label, blob = readings
    assert temperature == {**temperature, "valueType": "Float32", "units": "degC", "value": "2.35e+01"}
    assert (count["valueType"], count["value"]) == ("Uint32", "4000000000")
    assert "units" not in count
    assert running["value"] == "true"
    assert label["value"] == 'say "hi"\n'
    assert base64.b64decode(blob["binaryValue"]) == b"\x89PNG" and blob["mediaType"] == "image/png"
    assert "value" not in blob


def test_event_ids_differ_between_events() -> None:
    enc = encoder()
    first = json.loads(enc.encode("s", 1, [("Count", 1)]))
    second = json.loads(enc.encode("s", 1, [("Count", 1)]))
    assert first["id"] != second["id"] and first["readings"][0]["id"] != second["readings"][0]["id"]
