"""The OPC-UA driver: devices of the protocol ``opcua``, their variables read in one request, their sessions shared.

How the pieces fit: `config` parses a device's protocol properties into the `Endpoint` it talks to, `nodes`
compiles each resource's attributes into a `Variable` or a `Method`, `session` keeps one session per endpoint
(connecting, noticing a loss, reconnecting), `subscriptions` the monitored items of subscribed resources,
`datatypes` the types that writes and calls send, and `codec` the values. This module keeps the devices and
maps results to the runtime's: a node or method with a bad status fails that resource only; a lost or silent
server fails the whole read or write with ConnectionLost; a service fault fails it with ResourceFailure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.status_codes import get_name_and_doc
from asyncua.ua.uaprotocol_auto import (
    CallMethodRequest,
    CallMethodResult,
    ReadParameters,
    ReadValueId,
    TimestampsToReturn,
)
from asyncua.ua.uatypes import DataValue, StatusCode, Variant, VariantType

from yurt_iot.runtime.sdk import (
    ConfigurationError,
    DeviceBinding,
    Driver,
    PushSink,
    ReadResult,
    ResourceFailure,
    Value,
)

from .codec import from_literal, to_raw, to_variant
from .config import Endpoint, parse_properties
from .datatypes import TypeUnknown
from .nodes import Method, Point, Variable, compile_point
from .session import Connection, Session
from .subscriptions import Watch

__all__ = ["OpcUaDriver"]


@dataclass(slots=True)
class _Device:
    name: str
    session: Session
    timeout: float
    points: dict[str, Point]
    watches: list[int] = field(default_factory=list)
    plans: dict[tuple[str, ...], _ReadPlan] = field(default_factory=dict)
    """By the resources read: the same few sets come back every poll."""

    def failure(self, point: Point, reason: str) -> ResourceFailure:
        return ResourceFailure(f"device {self.name!r} resource {point.name!r}: {reason}")

    def plan(self, resources: Sequence[str]) -> _ReadPlan:
        key = tuple(resources)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = _ReadPlan.of(self.points, key)
        return plan


@dataclass(frozen=True)
class _ReadPlan:
    """What reading some resources takes: the variables' Read request, the methods to call, the unknown names."""

    variables: tuple[Variable, ...]
    methods: tuple[Method, ...]
    unknown: tuple[str, ...]
    request: ReadParameters | None
    """The variables' values without timestamps: the runtime stamps a poll's readings itself, and timestamps
    would cost the server and us an encode and a decode per node (and asyncua's read_attributes would log every
    poll at INFO)."""

    @classmethod
    def of(cls, points: Mapping[str, Point], resources: Sequence[str]) -> _ReadPlan:
        names = list(dict.fromkeys(resources))
        variables = tuple(p for n in names if isinstance(p := points.get(n), Variable))
        methods = tuple(p for n in names if isinstance(p := points.get(n), Method))
        nodes = [ReadValueId(NodeId=point.node_id, AttributeId=AttributeIds.Value) for point in variables]
        request = ReadParameters(TimestampsToReturn=TimestampsToReturn.Neither, NodesToRead=nodes) if nodes else None
        return cls(variables, methods, tuple(n for n in names if n not in points), request)


class OpcUaDriver(Driver):
    """OPC-UA client devices, with EdgeX device-opc-ua profiles (see `nodes` for attributes, `config` for properties).

    Devices with the same endpoint, security and user share one session, made on first use. A read asks for the
    values of all its variables in one Read request and calls all its methods in one Call request. Resources
    with ``subscribe: true`` are monitored items: their changes go to `push` as ``(device, resource, {resource:
    raw value})``, the resource's name being the event's source.
    """

    def __init__(self, *, timeout: float = 1.0, push: PushSink | None = None) -> None:
        super().__init__(timeout=timeout, push=push)
        self._devices: dict[str, _Device] = {}
        self._sessions: dict[Endpoint, Session] = {}

    async def add_device(self, device: DeviceBinding) -> None:
        """Check the device's properties and attributes; adding a device again replaces it. Connects lazily."""
        config = await parse_properties(device.name, device.properties)
        points = {
            name: compile_point(device.name, resource, config.publishing_interval)
            for name, resource in device.resources.items()
        }
        await self.remove_device(device.name)
        timeout = config.timeout if config.timeout is not None else self.timeout
        session = self._sessions.get(config.endpoint)
        if session is None:
            session = Session(config.endpoint, timeout, self._changed, self._reachable)
            self._sessions[config.endpoint] = session
        target = self._devices[device.name] = _Device(device.name, session, timeout, points)
        for point in points.values():
            if isinstance(point, Variable) and point.subscribe:
                watch = Watch(device.name, point.name, point.node_id, point.publishing_interval)
                target.watches.append(session.watch(watch))

    async def remove_device(self, name: str) -> None:
        """Forget the device and its subscriptions; close its session if no other device uses it."""
        device = self._devices.pop(name, None)
        if device is None:
            return
        device.session.unwatch(device.watches)
        if not any(other.session is device.session for other in self._devices.values()):
            del self._sessions[device.session.endpoint]
            await device.session.close()

    async def read(self, device: str, resources: Sequence[str]) -> ReadResult:
        """Read the variables in one Read request and call the methods in one Call request."""
        target = self._device(device)
        plan = target.plan(resources)
        result = ReadResult()
        for name in plan.unknown:
            result.errors[name] = ResourceFailure(f"device {device!r} has no resource {name!r}")

        async def exchange(connection: Connection) -> None:
            if plan.request is not None:
                data = await connection.client.uaclient.read(plan.request)
                result.requests += 1
                for point, value in zip(plan.variables, data, strict=True):
                    _decode(target, point, value, result)
            if plan.methods:
                await _call(target, connection, plan.methods, result)

        if plan.variables or plan.methods:
            counts = (_count(plan.variables, "node"), _count(plan.methods, "method"))
            await target.session.request(f"reading {' and '.join(t for t in counts if t)}", target.timeout, exchange)
        return result

    async def write(self, device: str, values: Mapping[str, Value]) -> None:
        """Write the values in one Write request, each as a Variant of its node's own DataType.

        Nothing is sent unless every value fits its node's type. ResourceFailure names the resources the server
        refused; the others of the request were written.
        """
        target = self._device(device)
        variables: list[Variable] = []
        for name in values:
            point = target.points.get(name)
            if point is None:
                raise ResourceFailure(f"device {device!r} has no resource {name!r}")
            if isinstance(point, Method):
                raise target.failure(point, "is a method call, which can be read only")
            variables.append(point)
        if not variables:
            return

        async def exchange(connection: Connection) -> None:
            types = await connection.types.variant_types([point.node_id for point in variables])
            data: list[DataValue] = []
            for point in variables:
                variant_type = types[point.node_id]
                if isinstance(variant_type, TypeUnknown):
                    raise target.failure(point, f"cannot write {point.node_id.to_string()}: {variant_type}")
                try:
                    variant = to_variant(values[point.name], variant_type)
                except ValueError as error:
                    raise target.failure(point, f"cannot write {values[point.name]!r}: {error}") from None
                data.append(DataValue(variant, StatusCode=None))  # no status or timestamps: some servers refuse them
            nodes = [point.node_id for point in variables]
            statuses = await connection.client.uaclient.write_attributes(nodes, data, AttributeIds.Value)
            refused = [(point, status) for point, status in zip(variables, statuses, strict=True) if status.is_bad()]
            if refused:
                reasons = "; ".join(f"{point.name!r}: {_status_text(status)}" for point, status in refused)
                raise ResourceFailure(f"device {device!r}: the server refused writing {reasons}")

        await target.session.request(f"writing {_count(variables, 'node')}", target.timeout, exchange)

    async def close(self) -> None:
        """Close every session; the devices stay, and connect again (subscriptions too) when they are next read."""
        for session in self._sessions.values():
            await session.close()

    def _device(self, name: str) -> _Device:
        device = self._devices.get(name)
        if device is None:
            raise ConfigurationError(f"device {name!r} has not been added to the OPC-UA driver")
        return device

    def _changed(self, watch: Watch, value: Value) -> None:
        if self.push is not None and watch.device in self._devices:
            self.push(watch.device, watch.resource, {watch.resource: value})

    def _reachable(self, session: Session, connected: bool, reason: str) -> None:
        """A session opened or lost is news for its devices, also those that only subscribe and are never read."""
        for device in list(self._devices.values()):
            if device.session is session:
                self.connection_changed(device.name, connected, reason)


def _decode(device: _Device, point: Variable, data: DataValue, result: ReadResult) -> None:
    status = data.StatusCode or StatusCode()
    if status.is_bad():
        result.errors[point.name] = device.failure(point, f"{point.node_id.to_string()}: {_status_text(status)}")
        return
    try:
        result.values[point.name] = to_raw(None if data.Value is None else data.Value.Value)
    except ValueError as error:
        result.errors[point.name] = device.failure(point, f"{point.node_id.to_string()}: {error}")


async def _call(device: _Device, connection: Connection, methods: Sequence[Method], result: ReadResult) -> None:
    """Call the methods in one Call request; the first output argument of each is its resource's value."""
    requests: list[CallMethodRequest] = []
    called: list[Method] = []
    for method in methods:
        try:
            arguments = await _arguments(connection, method)
        except ValueError as error:
            result.errors[method.name] = device.failure(method, f"cannot call {method.method_id.to_string()}: {error}")
            continue
        request = CallMethodRequest()
        request.ObjectId, request.MethodId, request.InputArguments = method.object_id, method.method_id, arguments
        requests.append(request)
        called.append(method)
    if not requests:
        return
    outcomes: list[CallMethodResult] = await connection.client.uaclient.call(requests)
    result.requests += 1
    for method, outcome in zip(called, outcomes, strict=True):
        status = outcome.StatusCode or StatusCode()
        if status.is_bad():
            refused = [_status_text(s) for s in outcome.InputArgumentResults or [] if s.is_bad()]
            detail = f" (arguments: {', '.join(refused)})" if refused else ""
            result.errors[method.name] = device.failure(method, f"the call failed: {_status_text(status)}{detail}")
        elif not outcome.OutputArguments:
            result.errors[method.name] = device.failure(method, "the method returned no output argument")
        else:
            try:
                result.values[method.name] = to_raw(outcome.OutputArguments[0].Value)
            except ValueError as error:
                result.errors[method.name] = device.failure(method, str(error))


async def _arguments(connection: Connection, method: Method) -> list[Variant]:
    """The method's inputMap as Variants of the types it declares; Strings if it declares none, as EdgeX sends."""
    declared = await connection.types.input_types(method.method_id)
    if declared is None:
        return [Variant(str(from_literal(value, VariantType.String)), VariantType.String) for value in method.inputs]
    if len(declared) != len(method.inputs):
        raise ValueError(f"it takes {len(declared)} input arguments and inputMap has {len(method.inputs)}")
    arguments: list[Variant] = []
    for position, (value, variant_type) in enumerate(zip(method.inputs, declared, strict=True), 1):
        if isinstance(variant_type, TypeUnknown):
            raise ValueError(f"argument {position}: {variant_type}")
        try:
            arguments.append(to_variant(from_literal(value, variant_type), variant_type))
        except ValueError as error:
            raise ValueError(f"argument {position}: {error}") from None
    return arguments


def _status_text(status: StatusCode) -> str:
    name, doc = get_name_and_doc(status.value)
    return f"{name} ({doc.rstrip('.')})"


def _count(items: Sequence[object], noun: str) -> str:
    if not items:
        return ""
    return f"1 {noun}" if len(items) == 1 else f"{len(items)} {noun}s"
