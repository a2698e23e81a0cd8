"""Telemetry events: one EdgeX-compatible Event per device, source and poll, and the MQTT topic it goes to.

The payload is EdgeX's v3 Event JSON, so what an EdgeX consumer parses today parses ours::

    {"apiVersion": "v3", "id": "<uuid>", "deviceName": "...", "profileName": "...", "sourceName": "...",
     "origin": <ns>, "readings": [{"id": "<uuid>", "origin": <ns>, "deviceName": "...", "resourceName": "...",
     "profileName": "...", "valueType": "Float32", "units": "degC", "value": "2.35e+01"}, ...]}

and the default topic is EdgeX's `edgex/events/device/<service>/<profile>/<device>/<source>`.

Encoding runs for every reading, so everything that does not change between polls (names, types, units)
is serialised once, and a poll only joins those fragments with its values. The fragments of a resource
leave out the device name, so that the devices of one profile share them (a hundred devices of 125
resources would otherwise hold 12,500 near-identical strings).
"""

from __future__ import annotations

import json
import uuid
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from yurt_iot.runtime.values import Value, ValueSpec, is_numeric

DEFAULT_TOPIC_PREFIX = "edgex/events/device"


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class _ResourceFragment:
    spec: ValueSpec
    middle: str  # `,"resourceName":...,"units":"..",` between the device name and the value fields
    plain: bool  # the formatted value never needs JSON escaping (numbers and booleans)


_fragments: weakref.WeakValueDictionary[tuple[object, ...], _ResourceFragment] = weakref.WeakValueDictionary()
"""Fragments in use, shared by every encoder that needs the same one."""


def _fragment(profile: str, name: str, spec: ValueSpec, unit: str | None) -> _ResourceFragment:
    key = (profile, name, spec, unit)
    fragment = _fragments.get(key)
    if fragment is None:
        fields = {"resourceName": name, "profileName": profile, "valueType": spec.value_type}
        if unit:
            fields["units"] = unit
        plain = is_numeric(spec.value_type) or spec.value_type == "Bool"
        fragment = _fragments[key] = _ResourceFragment(spec, "," + _json(fields)[1:-1] + ",", plain)
    return fragment


class EventEncoder:
    """Encodes the events of one device: topics and payloads, with the constant parts built once."""

    def __init__(
        self,
        *,
        service: str,
        profile: str,
        device: str,
        resources: Mapping[str, ValueSpec],
        units: Mapping[str, str] | None = None,
        topic_prefix: str = DEFAULT_TOPIC_PREFIX,
    ) -> None:
        self.device = device
        self._topic_base = f"{topic_prefix}/{service}/{profile}/{device}/"
        self._event_head = f'{{"apiVersion":"v3","deviceName":{_json(device)},"profileName":{_json(profile)},'
        self._device_field = f',"deviceName":{_json(device)}'
        self._fragments = {
            name: _fragment(profile, name, spec, (units or {}).get(name) or spec.units)
            for name, spec in resources.items()
        }

    def topic(self, source: str) -> str:
        return self._topic_base + source

    def encode(self, source: str, origin_ns: int, values: Iterable[tuple[str, Value]]) -> bytes:
        """The Event JSON for readings (resource, value) taken at `origin_ns`."""
        event_id = str(uuid.uuid4())
        # Reading ids: the event's random UUID with its last 4 hex digits replaced by the reading's index,
        # unique within the event and as random across events as the event id, without a uuid4() per reading.
        id_stem = event_id[:-4]
        origin = str(origin_ns)
        device = self._device_field
        parts = []
        for index, (name, value) in enumerate(values):
            fragment = self._fragments[name]
            if fragment.plain:
                tail = f'"value":"{fragment.spec.format(value)}"'
            else:
                tail = _json(fragment.spec.reading_fields(value))[1:-1]
            parts.append(f'{{"id":"{id_stem}{index:04x}","origin":{origin}{device}{fragment.middle}{tail}}}')
        return (
            f'{self._event_head}"id":"{event_id}","sourceName":{_json(source)},"origin":{origin},'
            f'"readings":[{",".join(parts)}]}}'
        ).encode()
