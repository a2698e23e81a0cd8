"""A contract double of EdgeX core-metadata and core-command (REST API v3 as EdgeX 4.0.2 serves it).

Why a double: the Go module proxy this project builds from does not serve ``github.com/edgexfoundry/edgex-go``
(every version, tag or commit answers 403), so the real services cannot be built here. This double follows
shared/reference/edgex-api.md, including the behaviour verified against a running 4.0.2:

* writes are arrays of ``{apiVersion, requestId, <payload>}``; a contract violation anywhere fails the whole
  array with 400, a body that is not a JSON array with 500; otherwise 207 with one status per item (409 for a
  duplicate name, 400 for a device whose service or profile does not exist, 404 for a PATCH of a missing
  object);
* reads: ``{apiVersion, statusCode, <key>}``; lists page with offset/limit (-1..1024, 416 past the end),
  ``totalCount``, creation order, ``labels`` (any of them);
* device add/patch first asks the device's service to validate the device on the message bus
  (``edgex/<service>/validate/device``, answer on ``edgex/response/<service>/<requestID>``); no answer within
  the request timeout gives a plain-text 503 for the whole request; ``?bypassValidation=true`` skips it; with
  no bus the connection is dropped without an answer (EdgeX 4 panics there);
* device add/update/delete are published as system events on
  ``edgex/system-events/core-metadata/device/<action>/<service>/<profile>``;
* deleting a service or profile still used by a device answers 409; a profile PUT resets ``created`` and
  keeps ``id`` only if the body has it;
* core-command forwards ``GET``/``PUT /api/v3/device/name/{device}/{command}`` (query and body unchanged) to
  the device service's ``baseAddress``; an unreachable service gives 503 "failed to send a http request".

Run it as ``python -m yurt_iot.testing.edgex --metadata-port P --command-port Q [--bus HOST:PORT]``;
:class:`yurt_iot.testing.edgex.EdgeX` does that for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import paho.mqtt.client as mqtt
import yaml

from yurt_iot.runtime.mqttclient import MqttClient, MqttSettings
from yurt_iot.sim.process import until_signalled
from yurt_iot.testing.edgex.http import Request, Response, json_response, start_server
from yurt_iot.testing.ports import LOOPBACK

__all__ = ["VERSION", "CoreServices", "main"]

VERSION = "4.0.2"
"""The EdgeX release whose behaviour the double follows (what ``/api/v3/version`` reports)."""
API = "v3"
MAX_RESULT_COUNT = 1024
ADMIN_STATES = {"LOCKED", "UNLOCKED"}
OPERATING_STATES = {"UP", "DOWN", "UNKNOWN"}
READ_WRITE = {"R", "W", "RW", "WR"}
_SCALARS = ["Bool", "String", "Uint8", "Uint16", "Uint32", "Uint64", "Int8", "Int16", "Int32", "Int64"]
VALUE_TYPES = {*_SCALARS, "Float32", "Float64", "Binary", "Object", "ObjectArray"} | {
    f"{t}Array" for t in [*_SCALARS, "Float32", "Float64"]
}


class ContractError(Exception):
    """The request as a whole breaks the contract: 400 for everything."""


class ItemError(Exception):
    """One item of a batch fails with `status` (or, raised outside the items, the whole request)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Dropped(Exception):
    """Close the connection without an answer."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _error(status: int, message: str) -> Response:
    return json_response(status, {"apiVersion": API, "message": message, "statusCode": status})


def _require(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise ContractError(f"{where}: {problem}")


def _name_of(obj: dict[str, Any], where: str) -> str:
    name = obj.get("name")
    _require(isinstance(name, str) and name != "", f"{where}.Name", "required")
    return str(name)


def _check_enum(obj: dict[str, Any], key: str, allowed: set[str], where: str, *, required: bool) -> None:
    if key in obj or required:
        _require(obj.get(key) in allowed, f"{where}.{key}", f"must be one of {sorted(allowed)}")


def _check_service(s: dict[str, Any], where: str, *, patch: bool) -> None:
    if not patch:
        _name_of(s, where)
    if "baseAddress" in s or not patch:
        url = urlsplit(str(s.get("baseAddress") or ""))
        _require(bool(url.scheme and url.netloc), f"{where}.BaseAddress", "must be a URI")
    _check_enum(s, "adminState", ADMIN_STATES, where, required=not patch)


def _check_profile(p: dict[str, Any], where: str) -> None:
    _name_of(p, where)
    resources = p.get("deviceResources") or []
    _require(isinstance(resources, list), f"{where}.DeviceResources", "must be a list")
    names = set()
    for i, r in enumerate(resources):
        at = f"{where}.DeviceResources[{i}]"
        names.add(_name_of(r, at))
        props = r.get("properties")
        _require(isinstance(props, dict), f"{at}.Properties", "required")
        _check_enum(props, "valueType", VALUE_TYPES, f"{at}.Properties", required=True)
        _check_enum(props, "readWrite", READ_WRITE, f"{at}.Properties", required=True)
    for i, c in enumerate(p.get("deviceCommands") or []):
        at = f"{where}.DeviceCommands[{i}]"
        _name_of(c, at)
        _check_enum(c, "readWrite", READ_WRITE, at, required=True)
        operations = c.get("resourceOperations")
        _require(isinstance(operations, list) and len(operations) > 0, f"{at}.ResourceOperations", "gt=0")
        for op in operations:
            _require(op.get("deviceResource") in names, f"{at}.ResourceOperations", "unknown deviceResource")


def _check_device(d: dict[str, Any], where: str, *, patch: bool) -> None:
    if not patch:
        _name_of(d, where)
        _require(isinstance(d.get("serviceName"), str) and d["serviceName"] != "", f"{where}.ServiceName", "required")
    if "protocols" in d or not patch:
        protocols = d.get("protocols")
        ok = isinstance(protocols, dict) and protocols and all(isinstance(v, dict) for v in protocols.values())
        _require(bool(ok), f"{where}.Protocols", "required, a map of maps")
    _check_enum(d, "adminState", ADMIN_STATES, where, required=not patch)
    _check_enum(d, "operatingState", OPERATING_STATES, where, required=not patch)
    for i, e in enumerate(d.get("autoEvents") or []):
        _require(bool(e.get("interval")) and bool(e.get("sourceName")), f"{where}.AutoEvents[{i}]", "required")


@dataclass(frozen=True, slots=True)
class _Kind:
    """What differs between device services, profiles and devices in the batch and read endpoints."""

    label: str  # in messages
    key: str  # payload key in requests and single reads
    list_key: str
    request: str  # request type name, for messages


SERVICE = _Kind("device service", "service", "services", "DeviceServiceRequest")
PROFILE = _Kind("device profile", "profile", "profiles", "DeviceProfileRequest")
DEVICE = _Kind("device", "device", "devices", "DeviceRequest")

Route = Callable[[Request, dict[str, str]], Awaitable[Response | None]]


class _Bus:
    """core-metadata's message-bus side: device validation requests and system events, over MQTT."""

    def __init__(self, host: str, port: int) -> None:
        self._client = MqttClient(MqttSettings(host, port, client_id=f"edgex-double-{uuid.uuid4().hex[:8]}"))
        self._client.paho.on_message = self._on_message
        self._answers: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        """Connect and subscribe to the answers, then return."""
        self._task = asyncio.create_task(self._client.run(self._serve))
        await self._subscribed.wait()

    async def close(self) -> None:
        await self._client.close()

    async def _serve(self, lost: asyncio.Future[None]) -> None:
        await self._client.subscribe(["edgex/response/#"], 1)
        self._subscribed.set()
        await lost

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            envelope = json.loads(message.payload)
            future = self._answers.get(str(envelope.get("requestID")))
        except (ValueError, AttributeError):
            return  # not an envelope: not ours to answer
        if future is not None and not future.done():
            future.set_result(envelope)

    def publish(self, topic: str, payload: Any, request_id: str | None = None) -> None:
        envelope = {
            "apiVersion": API,
            "receivedTopic": topic,
            "correlationID": str(uuid.uuid4()),
            "requestID": request_id or str(uuid.uuid4()),
            "errorCode": 0,
            "contentType": "application/json",
            "payload": payload,
        }
        self._client.paho.publish(topic, json.dumps(envelope), qos=1)

    async def validate(self, device: dict[str, Any]) -> None:
        """Ask the device's service to validate it; waits for the answer as long as the request may take."""
        service, request_id = device["serviceName"], str(uuid.uuid4())
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._answers[request_id] = future
        try:
            request = {"apiVersion": API, "requestId": request_id, "device": device}
            self.publish(f"edgex/{service}/validate/device", request, request_id)
            answer = await future
        finally:
            del self._answers[request_id]
        if answer.get("errorCode", 0) != 0:
            payload = answer.get("payload")
            detail = payload if isinstance(payload, str) else json.dumps(payload)
            raise ItemError(500, f"Device {device['name']} validation failed: {detail}")

    def system_event(self, action: str, device: dict[str, Any]) -> None:
        owner, profile = device.get("serviceName", ""), device.get("profileName", "")
        event = {
            "apiVersion": API,
            "type": "device",
            "action": action,
            "source": "core-metadata",
            "owner": owner,
            "tags": None,
            "details": device,
            "timestamp": time.time_ns(),
        }
        self.publish(f"edgex/system-events/core-metadata/device/{action}/{owner}/{profile}", event)


class CoreServices:
    """The state and routes of core-metadata and core-command; one instance serves both ports."""

    def __init__(self, *, bus: _Bus | None, request_timeout: float, command_url: str) -> None:
        self.bus = bus
        self.request_timeout = request_timeout
        self.command_url = command_url
        self.objects: dict[_Kind, dict[str, dict[str, Any]]] = {SERVICE: {}, PROFILE: {}, DEVICE: {}}
        self._forward = httpx.AsyncClient(timeout=request_timeout)
        self.metadata_routes: list[tuple[str, str, Route]] = [
            ("GET", "ping", self._ping),
            ("GET", "version", self._version),
            ("POST", "deviceservice", self._add_services),
            ("PATCH", "deviceservice", self._patch_services),
            ("GET", "deviceservice/all", self._lister(SERVICE)),
            ("GET", "deviceservice/name/{name}", self._getter(SERVICE)),
            ("DELETE", "deviceservice/name/{name}", self._delete_service),
            ("POST", "deviceprofile", self._add_profiles),
            ("PUT", "deviceprofile", self._put_profiles),
            ("POST", "deviceprofile/uploadfile", self._upload_profile),
            ("PUT", "deviceprofile/uploadfile", self._upload_profile),
            ("GET", "deviceprofile/all", self._lister(PROFILE)),
            ("GET", "deviceprofile/name/{name}", self._getter(PROFILE)),
            ("DELETE", "deviceprofile/name/{name}", self._delete_profile),
            ("POST", "device", self._add_devices),
            ("PATCH", "device", self._patch_devices),
            ("GET", "device/all", self._lister(DEVICE)),
            ("GET", "device/name/{name}", self._getter(DEVICE)),
            ("GET", "device/check/name/{name}", self._check_device),
            ("DELETE", "device/name/{name}", self._delete_device),
        ]
        self.command_routes: list[tuple[str, str, Route]] = [
            ("GET", "ping", self._ping),
            ("GET", "version", self._version),
            ("GET", "device/name/{name}", self._core_commands),
            ("GET", "device/name/{name}/{command}", self._issue),
            ("PUT", "device/name/{name}/{command}", self._issue),
        ]

    async def aclose(self) -> None:
        await self._forward.aclose()

    def handler(self, routes: list[tuple[str, str, Route]]) -> Callable[[Request], Awaitable[Response | None]]:
        """The HTTP handler of one service: route, time out like EdgeX's timeout middleware, map errors."""

        async def handle(request: Request) -> Response | None:
            correlation = request.headers.get("x-correlation-id") or str(uuid.uuid4())
            response = await self._dispatch(routes, request)
            if response is not None:
                response.headers.setdefault("X-Correlation-ID", correlation)
            return response

        return handle

    async def _dispatch(self, routes: list[tuple[str, str, Route]], request: Request) -> Response | None:
        segments = [unquote(s) for s in request.path.split("/")[1:]]
        if segments[:2] != ["api", API]:
            return _error(404, f"no route {request.path}")
        for method, pattern, route in routes:
            params = _match(pattern.split("/"), segments[2:])
            if params is not None and method == request.method:
                try:
                    return await asyncio.wait_for(route(request, params), self.request_timeout)
                except TimeoutError:
                    return Response(503, b"Timeout", "text/plain; charset=utf-8")
                except ContractError as exc:
                    return _error(400, str(exc))
        return _error(404 if request.method == "GET" else 405, f"no route {request.method} {request.path}")

    # -- shared ------------------------------------------------------------------------------------

    async def _ping(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(200, {"apiVersion": API, "timestamp": time.strftime("%c"), "serviceName": "double"})

    async def _version(self, request: Request, params: dict[str, str]) -> Response:
        return json_response(200, {"apiVersion": API, "version": VERSION, "serviceName": "double"})

    def _getter(self, kind: _Kind) -> Route:
        async def get(request: Request, params: dict[str, str]) -> Response:
            obj = self.objects[kind].get(params["name"])
            if obj is None:
                return _error(404, f"{kind.label} {params['name']} does not exist")
            return json_response(200, {"apiVersion": API, "statusCode": 200, kind.key: obj})

        return get

    def _lister(self, kind: _Kind) -> Route:
        async def list_all(request: Request, params: dict[str, str]) -> Response:
            try:
                offset, limit = int(request.query.get("offset", "0")), int(request.query.get("limit", "20"))
            except ValueError as exc:
                raise ContractError(f"offset and limit must be integers: {exc}") from exc
            if not -1 <= limit <= MAX_RESULT_COUNT:
                bounds = f"min -1 ~ max {MAX_RESULT_COUNT}"
                raise ContractError(f"querystring limit's value {limit} is out of {bounds} range.")
            if offset < 0:
                raise ContractError(f"querystring offset's value {offset} is out of min 0 ~ max 2147483647 range.")
            wanted = {label for label in request.query.get("labels", "").split(",") if label}
            found = [o for o in self.objects[kind].values() if not wanted or wanted & set(o.get("labels") or [])]
            if found and offset > len(found):
                return _error(416, f"query objects bounds out of range. length:{len(found)} offset:{offset}")
            page = found[offset:] if limit == -1 else found[offset : offset + limit]
            body = {"apiVersion": API, "statusCode": 200, "totalCount": len(found), kind.list_key: page}
            return json_response(200, body)

        return list_all

    def _items(self, request: Request, kind: _Kind) -> list[tuple[str | None, dict[str, Any]]]:
        """The (requestId, payload) pairs of a batch; ContractError if any item breaks the envelope contract."""
        try:
            body = request.json()
        except ValueError:
            body = None
        if not isinstance(body, list):
            raise ItemError(500, "failed to parse the request body as a JSON array")
        items = []
        for i, item in enumerate(body):
            where = f"{kind.request}[{i}]"
            _require(isinstance(item, dict) and item.get("apiVersion") == API, f"{where}.ApiVersion", "must be v3")
            request_id = item.get("requestId")
            if request_id is not None:
                _require(_is_uuid(request_id), f"{where}.RequestId", "must be a UUID")
            payload = item.get(kind.key)
            _require(isinstance(payload, dict), f"{where}.{kind.key}", "required")
            items.append((request_id, payload))
        return items

    async def _batch(
        self,
        request: Request,
        kind: _Kind,
        check: Callable[[dict[str, Any], str], None],
        apply: Callable[[dict[str, Any]], Awaitable[tuple[int, str | None]]],
    ) -> Response:
        try:
            items = self._items(request, kind)
        except ItemError as exc:
            return _error(exc.status, str(exc))
        for i, (_, payload) in enumerate(items):
            check(payload, f"{kind.request}[{i}].{kind.key}")
        answers = []
        for request_id, payload in items:
            answer: dict[str, Any] = {"apiVersion": API}
            if request_id is not None:
                answer["requestId"] = request_id
            try:
                status, new_id = await apply(payload)
            except ItemError as exc:
                answer.update(message=str(exc), statusCode=exc.status)
            else:
                answer["statusCode"] = status
                if new_id is not None:
                    answer["id"] = new_id
            answers.append(answer)
        return json_response(207, answers)

    def _create(self, kind: _Kind, obj: dict[str, Any]) -> tuple[int, str]:
        name = obj["name"]
        if name in self.objects[kind]:
            raise ItemError(409, f"{kind.label} name {name} already exists")
        now = _now_ms()
        stored = {**obj, "id": str(uuid.uuid4()), "created": now, "modified": now}
        self.objects[kind][name] = stored
        return 201, stored["id"]

    def _find(self, kind: _Kind, ref: dict[str, Any]) -> dict[str, Any]:
        """The stored object a PATCH names by id or name."""
        if ref.get("id"):
            found = next((o for o in self.objects[kind].values() if o["id"] == ref["id"]), None)
            what = f"id {ref['id']}"
        else:
            found = self.objects[kind].get(str(ref.get("name") or ""))
            what = f"name {ref.get('name')}"
        if found is None:
            raise ItemError(404, f"{kind.label} with {what} does not exist")
        return found

    def _delete(self, kind: _Kind, name: str, users: Callable[[dict[str, Any]], bool]) -> Response:
        if name not in self.objects[kind]:
            return _error(404, f"{kind.label} {name} does not exist")
        if any(users(d) for d in self.objects[DEVICE].values()):
            return _error(409, f"fail to delete the {kind.label} when associated device exists")
        del self.objects[kind][name]
        return json_response(200, {"apiVersion": API, "statusCode": 200})

    # -- device services ---------------------------------------------------------------------------

    async def _add_services(self, request: Request, params: dict[str, str]) -> Response:
        async def add(s: dict[str, Any]) -> tuple[int, str | None]:
            return self._create(SERVICE, s)

        return await self._batch(request, SERVICE, lambda s, at: _check_service(s, at, patch=False), add)

    async def _patch_services(self, request: Request, params: dict[str, str]) -> Response:
        async def patch(s: dict[str, Any]) -> tuple[int, str | None]:
            stored = self._find(SERVICE, s)
            if s.get("name", stored["name"]) != stored["name"]:
                raise ItemError(400, "a device service cannot be renamed")
            stored.update({k: v for k, v in s.items() if k not in ("id", "created")}, modified=_now_ms())
            return 200, None

        return await self._batch(request, SERVICE, lambda s, at: _check_service(s, at, patch=True), patch)

    async def _delete_service(self, request: Request, params: dict[str, str]) -> Response:
        return self._delete(SERVICE, params["name"], lambda d: d["serviceName"] == params["name"])

    # -- device profiles ---------------------------------------------------------------------------

    async def _add_profiles(self, request: Request, params: dict[str, str]) -> Response:
        async def add(p: dict[str, Any]) -> tuple[int, str | None]:
            return self._create(PROFILE, p)

        return await self._batch(request, PROFILE, _check_profile, add)

    async def _put_profiles(self, request: Request, params: dict[str, str]) -> Response:
        async def put(p: dict[str, Any]) -> tuple[int, str | None]:
            if p["name"] not in self.objects[PROFILE]:
                raise ItemError(404, f"device profile {p['name']} does not exist")
            # EdgeX 4.0.2 quirk: created is reset (and so left out), id kept only when the body carries it.
            self.objects[PROFILE][p["name"]] = {k: v for k, v in p.items() if k != "created"} | {"modified": _now_ms()}
            return 200, None

        return await self._batch(request, PROFILE, _check_profile, put)

    async def _upload_profile(self, request: Request, params: dict[str, str]) -> Response:
        try:
            profile = yaml.safe_load(_multipart_file(request))
            _require(isinstance(profile, dict), "file", "must be a YAML mapping")
            _check_profile(profile, "DeviceProfile")
        except (ValueError, yaml.YAMLError) as exc:
            raise ContractError(f"cannot read the profile file: {exc}") from exc
        if request.method == "PUT":
            if profile["name"] not in self.objects[PROFILE]:
                return _error(404, f"device profile {profile['name']} does not exist")
            old = self.objects[PROFILE][profile["name"]]
            self.objects[PROFILE][profile["name"]] = {**profile, "id": old["id"], "modified": _now_ms()}
            return json_response(200, {"apiVersion": API, "statusCode": 200})
        try:
            _, new_id = self._create(PROFILE, profile)
        except ItemError as exc:
            return _error(exc.status, str(exc))
        return json_response(201, {"apiVersion": API, "statusCode": 201, "id": new_id})

    async def _delete_profile(self, request: Request, params: dict[str, str]) -> Response:
        return self._delete(PROFILE, params["name"], lambda d: d.get("profileName") == params["name"])

    # -- devices -----------------------------------------------------------------------------------

    def _check_references(self, device: dict[str, Any]) -> None:
        if device["serviceName"] not in self.objects[SERVICE]:
            raise ItemError(400, f"device service '{device['serviceName']}' does not exists")
        profile = device.get("profileName")
        if profile and profile not in self.objects[PROFILE]:
            raise ItemError(400, f"device profile '{profile}' does not exists")

    async def _validated(self, request: Request, device: dict[str, Any]) -> None:
        if request.query.get("bypassValidation") == "true":
            return
        if self.bus is None:
            raise _Dropped  # EdgeX 4 with the bus disabled: the handler panics, the connection closes
        await self.bus.validate(device)

    async def _add_devices(self, request: Request, params: dict[str, str]) -> Response | None:
        async def add(d: dict[str, Any]) -> tuple[int, str | None]:
            if d["name"] in self.objects[DEVICE]:
                raise ItemError(409, f"device name {d['name']} already exists")
            self._check_references(d)
            await self._validated(request, d)
            result = self._create(DEVICE, d)
            self._event("add", self.objects[DEVICE][d["name"]])
            return result

        try:
            return await self._batch(request, DEVICE, lambda d, at: _check_device(d, at, patch=False), add)
        except _Dropped:
            return None

    async def _patch_devices(self, request: Request, params: dict[str, str]) -> Response | None:
        async def patch(d: dict[str, Any]) -> tuple[int, str | None]:
            stored = self._find(DEVICE, d)
            if d.get("name", stored["name"]) != stored["name"]:
                raise ItemError(400, "a device cannot be renamed")
            updated = {**stored, **{k: v for k, v in d.items() if k not in ("id", "created")}}
            self._check_references(updated)
            await self._validated(request, updated)
            stored.update(updated, modified=_now_ms())
            self._event("update", stored)
            return 200, None

        try:
            return await self._batch(request, DEVICE, lambda d, at: _check_device(d, at, patch=True), patch)
        except _Dropped:
            return None

    async def _check_device(self, request: Request, params: dict[str, str]) -> Response:
        if params["name"] not in self.objects[DEVICE]:
            return _error(404, f"device {params['name']} does not exist")
        return json_response(200, {"apiVersion": API, "statusCode": 200})

    async def _delete_device(self, request: Request, params: dict[str, str]) -> Response:
        device = self.objects[DEVICE].get(params["name"])
        response = self._delete(DEVICE, params["name"], lambda d: False)
        if device is not None:
            self._event("delete", device)
        return response

    def _event(self, action: str, device: dict[str, Any]) -> None:
        if self.bus is not None:
            self.bus.system_event(action, device)

    # -- core-command ------------------------------------------------------------------------------

    def _commands_of(self, device: dict[str, Any]) -> list[dict[str, Any]]:
        profile = self.objects[PROFILE].get(device.get("profileName") or "") or {}
        resources = {r["name"]: r for r in profile.get("deviceResources") or []}
        path = f"/api/{API}/device/name/{device['name']}"
        commands = []
        for r in resources.values():
            if not r.get("isHidden"):
                value_type = r["properties"]["valueType"]
                commands.append((r["name"], r["properties"]["readWrite"], [(r["name"], value_type)]))
        for c in profile.get("deviceCommands") or []:
            if not c.get("isHidden"):
                ops = [op["deviceResource"] for op in c["resourceOperations"]]
                types = [(name, resources[name]["properties"]["valueType"]) for name in ops if name in resources]
                commands.append((c["name"], c["readWrite"], types))
        return [
            {
                "name": name,
                "get": "R" in rw,
                "set": "W" in rw,
                "path": f"{path}/{name}",
                "url": self.command_url,
                "parameters": [{"resourceName": n, "valueType": t} for n, t in types],
            }
            for name, rw, types in commands
        ]

    async def _core_commands(self, request: Request, params: dict[str, str]) -> Response:
        device = self.objects[DEVICE].get(params["name"])
        if device is None:
            return _error(404, f"device {params['name']} does not exist")
        commands = {
            "deviceName": device["name"],
            "profileName": device.get("profileName"),
            "coreCommands": self._commands_of(device),
        }
        return json_response(200, {"apiVersion": API, "statusCode": 200, "deviceCoreCommand": commands})

    async def _issue(self, request: Request, params: dict[str, str]) -> Response:
        device = self.objects[DEVICE].get(params["name"])
        if device is None:
            return _error(404, f"device {params['name']} does not exist")
        command = next((c for c in self._commands_of(device) if c["name"] == params["command"]), None)
        if command is None:
            return _error(404, f"command {params['command']} not found in device {params['name']}")
        if not command["get" if request.method == "GET" else "set"]:
            return _error(405, f"{params['command']} is not a {'read' if request.method == 'GET' else 'write'} command")
        service = self.objects[SERVICE].get(device["serviceName"])
        if service is None:
            return _error(404, f"device service {device['serviceName']} does not exist")
        url = service["baseAddress"].rstrip("/") + request.path
        headers = {"Content-Type": request.headers.get("content-type", "application/json")}
        if "x-correlation-id" in request.headers:
            headers["X-Correlation-ID"] = request.headers["x-correlation-id"]
        try:
            answer = await self._forward.request(
                request.method, url, params=request.query, content=request.body or None, headers=headers
            )
        except httpx.HTTPError as exc:
            return _error(503, f"failed to send a http request: {exc!r}")
        return Response(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"))


def _match(pattern: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(segments):
        return None
    params = {}
    for want, got in zip(pattern, segments, strict=True):
        if want.startswith("{"):
            if not got:
                return None
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def _is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _multipart_file(request: Request) -> bytes:
    """The `file` part of a multipart/form-data body."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ValueError("expected multipart/form-data")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + request.body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload
    raise ValueError("no 'file' part")


async def serve(metadata_port: int, command_port: int, bus: tuple[str, int] | None, request_timeout: float) -> None:
    """Serve both APIs on 127.0.0.1 until SIGTERM or SIGINT."""
    message_bus = _Bus(*bus) if bus is not None else None
    services = CoreServices(
        bus=message_bus, request_timeout=request_timeout, command_url=f"http://{LOOPBACK}:{command_port}"
    )
    if message_bus is not None:
        async with asyncio.timeout(10.0):
            await message_bus.start()
    servers = [
        await start_server(services.handler(services.metadata_routes), LOOPBACK, metadata_port),
        await start_server(services.handler(services.command_routes), LOOPBACK, command_port),
    ]
    try:
        await until_signalled()
    finally:
        for server in servers:
            server.close()
        await services.aclose()
        if message_bus is not None:
            await message_bus.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A contract double of EdgeX core-metadata and core-command.")
    parser.add_argument("--metadata-port", type=int, required=True)
    parser.add_argument("--command-port", type=int, required=True)
    parser.add_argument("--bus", help="MQTT broker HOST:PORT for device validation and system events")
    parser.add_argument("--request-timeout", type=float, default=5.0, help="seconds (EdgeX Service.RequestTimeout)")
    args = parser.parse_args(argv)
    bus = None
    if args.bus:
        host, _, port = args.bus.rpartition(":")
        bus = (host, int(port))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.metadata_port, args.command_port, bus, args.request_timeout))
