"""A small JSON API on a gateway's ops port, for `yurt-iot devices ls|read|write` and the demo's table.

    GET /api/v1/devices                    every device: protocol, state, readings so far, latest values
    GET /api/v1/devices/{name}             one device
    GET /api/v1/devices/{name}/{resource}  a fresh read of a resource (between polls, never during one)
    PUT /api/v1/devices/{name}             write {"resource": value, ...} (values as in desiredValue, or JSON)

Errors are ``{"error": message}``: 404 for an unknown device, 400 for a refused write or an unknown resource,
502 when the device did not answer. It serves the runtime as it runs: no state of its own.

Writes move real actuators and the API has no authentication, so they are accepted from the gateway's own host
only (loopback): in a pod, through `kubectl exec` or `kubectl port-forward`, even when the ops port listens on
every address for the kubelet's probes and Prometheus.
"""

from __future__ import annotations

import base64
import ipaddress
import json
from typing import Any
from urllib.parse import unquote

from yurt_iot.ops import Response
from yurt_iot.runtime.device import DeviceRunner
from yurt_iot.runtime.gateway import Gateway
from yurt_iot.runtime.sdk import ConfigurationError, DriverError
from yurt_iot.runtime.values import Value, WriteRefusedError

PREFIX = "/api/v1/devices"


def _json_default(value: object) -> Any:
    if isinstance(value, bytes):  # Binary resources
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _reply(status: int, document: Any) -> Response:
    return status, "application/json", json.dumps(document, default=_json_default).encode()


def _error(status: int, message: str) -> Response:
    return _reply(status, {"error": message})


def summary(runner: DeviceRunner, readings: float) -> dict[str, Any]:
    """What `devices ls` shows of a device; `readings` is how many it produced since it started."""
    spec = runner.device.spec
    return {
        "name": runner.name,
        "protocol": runner.binding.protocol,
        "profile": spec.profile_name,
        "service": spec.service_name,
        "state": runner.state,
        "lastConnected": runner.last_connected_ms,
        "readings": int(readings),
        "latest": {name: {"value": value, "origin": origin} for name, (value, origin) in sorted(runner.latest.items())},
    }


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class DeviceApi:
    """Serves /api/v1/devices of one Gateway (an `ops.ApiHandler`)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def readings(self, name: str) -> float:
        value = self.gateway.metrics.registry.get_sample_value("yurt_iot_readings_total", {"device": name})
        return value or 0.0

    def summaries(self) -> list[dict[str, Any]]:
        return [summary(r, self.readings(n)) for n, r in sorted(self.gateway.devices.items())]

    async def __call__(self, method: str, target: str, body: bytes, client: str) -> Response:
        path = target.split("?", 1)[0].rstrip("/")
        if path != PREFIX and not path.startswith(PREFIX + "/"):
            return _error(404, f"no API at {path}")
        parts = [unquote(p) for p in path.removeprefix(PREFIX).split("/") if p]
        if method == "PUT" and not _is_loopback(client):
            return _error(403, "writes are accepted from the gateway's host only (kubectl exec or port-forward)")
        if not parts:
            return _reply(200, {"devices": self.summaries()}) if method == "GET" else _error(405, "use GET")
        runner = self.gateway.devices.get(parts[0])
        if runner is None:
            return _error(404, f"no device {parts[0]!r} in this gateway")
        if len(parts) == 1 and method == "GET":
            return _reply(200, summary(runner, self.readings(runner.name)))
        if len(parts) == 1 and method == "PUT":
            return await self._write(runner, body)
        if len(parts) == 2 and method == "GET":
            return await self._read(runner, parts[1])
        return _error(405, f"{method} {path} is not served (GET a device or resource, PUT a device)")

    async def _read(self, runner: DeviceRunner, resource: str) -> Response:
        try:
            values, errors = await runner.read([resource])
        except ConfigurationError as error:
            return _error(404, str(error))
        except DriverError as error:
            return _error(502, f"device {runner.name} did not answer: {error}")
        if resource in errors:
            return _error(502, f"device {runner.name} resource {resource}: {errors[resource]}")
        if resource not in values:
            return _error(502, f"device {runner.name} resource {resource}: the value read is not valid (see logs)")
        return _reply(200, {"device": runner.name, "resource": resource, "value": values[resource]})

    async def _write(self, runner: DeviceRunner, body: bytes) -> Response:
        try:
            wanted = json.loads(body or b"null")
        except ValueError as error:
            return _error(400, f"the body is not JSON: {error}")
        if not isinstance(wanted, dict) or not wanted:
            return _error(400, 'the body must be a JSON object of resources and values, e.g. {"SetPoint": 21.5}')
        values: dict[str, Value] = wanted
        try:
            await runner.write(values)
        except WriteRefusedError as error:
            return _error(400, str(error))
        except DriverError as error:
            return _error(502, f"device {runner.name}: write failed: {error}")
        return _reply(200, {"device": runner.name, "written": values})
