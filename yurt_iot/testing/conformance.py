"""The conformance kit for driver authors: what the runtime relies on a driver for, as tests pytest inherits.

A driver is only as good as its behaviour at the edges the runtime cannot see into: a peer that goes away and
comes back, a request that is never answered, a read cancelled because a device was removed. The kit checks
those edges against the author's own simulator, the same way for every driver, with the SDK calls the runtime
makes (`yurt_iot.runtime.device.DeviceRunner`):

* every declared resource reads, as the value and Python type the author expects, and the profile's ValueSpec
  accepts it; written values read back;
* bad attributes or properties are a ConfigurationError at ``add_device`` naming what is wrong; a resource the
  device refuses is a ResourceFailure in ``ReadResult.errors`` while the others still read; a peer that is down
  is ConnectionLost, also before the first connection, and ``add_device`` does not need the peer;
* after the peer restarts, reads resume on the same driver object; a peer that never answers fails a read
  within the timeout; a read cancelled in flight raises CancelledError at once and leaves the driver usable;
* values the peer sends by itself reach the push sink;
* ``remove_device`` forgets the device and closes what only it used; ``close`` releases every connection and
  task and may be called twice.

An author subclasses `DriverConformance` in a class named ``Test...``, says which protocol it tests and provides
a `Peer` (their simulator, with start/stop and optional fault hooks), the device binding pointing at it and the
values to expect. Checks whose hook is not provided are skipped with the reason. Each check runs in an event loop
of its own, as `yurt_iot.testing.waiting.async_test` does, so the kit needs no pytest plugin::

    class TestThermometerDriver(DriverConformance[ThermometerPeer]):
        protocol = "thermometer"

        def make_peer(self, request: pytest.FixtureRequest) -> ThermometerPeer:
            return ThermometerPeer(port=stable_free_port())

        def device(self, peer: ThermometerPeer) -> DeviceBinding:
            return device("t1", "thermometer", {"Address": "127.0.0.1", "Port": str(peer.port)},
                          [resource("temperature", "Float64", "R", query="MEAS:TEMP?")])

        def expected(self, peer: ThermometerPeer) -> Mapping[str, Value]:
            return {"temperature": 21.5}
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

import pytest

from yurt_iot.api.iot import DeviceResource
from yurt_iot.runtime import registry
from yurt_iot.runtime.sdk import (
    AttributeValue,
    ConfigurationError,
    ConnectionLost,
    DeviceBinding,
    Driver,
    DriverError,
    ReadResult,
    ResourceBinding,
    ResourceFailure,
    Value,
)
from yurt_iot.runtime.values import ReadingError
from yurt_iot.testing.waiting import async_wait_for

__all__ = ["DriverConformance", "Misconfiguration", "Peer", "Pushes", "connections_to", "device", "resource"]


# --- building bindings as the runtime builds them -------------------------------------------------------------


def resource(name: str, value_type: str, read_write: str = "RW", **attributes: AttributeValue) -> ResourceBinding:
    """A resource of a DeviceProfile (``properties.valueType``, ``readWrite``, ``attributes``), bound as the
    runtime binds it, so that the driver meets the same ValueSpec and attribute types as in production."""
    properties = {"valueType": value_type, "readWrite": read_write}
    model = DeviceResource.model_validate(
        {"name": name, "description": name, "isHidden": False, "properties": properties, "attributes": attributes}
    )
    return ResourceBinding.from_resource(model)


def device(
    name: str, protocol: str, properties: Mapping[str, str], resources: Iterable[ResourceBinding]
) -> DeviceBinding:
    """A device as the runtime hands it to `Driver.add_device`."""
    return DeviceBinding(name, protocol, dict(properties), {r.name: r for r in resources})


def connections_to(port: int) -> int:
    """Established TCP connections to `port` on this machine (IPv4), counted at the client end."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        remote, state = line.split()[2:4]
        if state == "01" and int(remote.rpartition(":")[2], 16) == port:
            count += 1
    return count


# --- what the author provides ----------------------------------------------------------------------------------


class Peer(abc.ABC):
    """The other end of the driver's connections (a device simulator, a broker and a simulator, ...) under the
    kit's control. Every method runs on the check's event loop; blocking work belongs in `asyncio.to_thread`.

    `start` and `stop` are required; the other hooks are optional, and the checks that need one are skipped
    when it is not overridden.
    """

    port: int | None = None
    """The TCP port the driver connects to, if any: the kit then checks that connections are closed."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Serve, on the same address every time (the kit stops and starts the peer to check reconnection).
        State the device holds (written values) survives a restart."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Go away as a switched-off device does: refuse connections and close the open ones."""

    async def close(self) -> None:
        """Release everything, running or not; called once at the end of every check."""
        await self.stop()

    async def hang(self) -> None:
        """From now on, take requests but never answer them (keeping connections open)."""
        raise NotImplementedError

    async def heal(self) -> None:
        """Answer again, after `hang`."""
        raise NotImplementedError

    def requests_received(self) -> int:
        """Requests the peer has received so far (or anything that grows when the driver sends one)."""
        raise NotImplementedError

    async def push(self) -> tuple[str, Mapping[str, Value]]:
        """Make the device send values by itself; returns the source and the raw values the sink must get.
        Values should differ from one call to the next: the kit calls again if the first was sent before the
        driver listened (as a real device's would be lost)."""
        raise NotImplementedError


def _provides(peer: Peer, hook: str) -> bool:
    return getattr(type(peer), hook) is not getattr(Peer, hook)


@dataclass(frozen=True, slots=True)
class Misconfiguration:
    """A device that `add_device` must refuse with a ConfigurationError whose message contains `message`."""

    device: DeviceBinding
    message: str


class Pushes:
    """A push sink that keeps every (device, source, values) it is given."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, dict[str, Value]]] = []

    def __call__(self, device: str, source: str, values: Mapping[str, Value]) -> None:
        self.items.append((device, source, dict(values)))

    def got(self, device: str, source: str, values: Mapping[str, Value]) -> bool:
        return any(
            d == device and s == source and all(v.get(k, _MISSING) == value for k, value in values.items())
            for d, s, v in self.items
        )


_MISSING = object()
P = TypeVar("P", bound=Peer)


@dataclass
class _Case(Generic[P]):
    """One check's world: the peer, the driver under test and the device pointing at the peer."""

    peer: P
    driver: Driver
    device: DeviceBinding
    pushes: Pushes
    reports: list[tuple[str, bool, str]] = field(default_factory=list)
    """What the driver told `Driver.on_connection`: (device, reachable, reason)."""
    tasks_before: set[asyncio.Task[Any]] = field(default_factory=set)
    connections_before: int = 0


class DriverConformance(abc.ABC, Generic[P]):
    """The checks of the module docstring; subclass it in a class named ``Test...`` and fill in the blanks.

    Required: `protocol`, `make_peer`, `device`, `expected`. Optional: `writes`, `invalid_resource`,
    `misconfigurations`, `make_driver` and the timing attributes below.
    """

    protocol: ClassVar[str]
    """The entry point name (a key of a Device's ``spec.protocols``) the driver is registered under."""
    timeout: ClassVar[float] = 0.5
    """Seconds the driver is given per read or write (its constructor's `timeout`). If devices of the protocol
    carry their own timeout property, `device` should set it to this."""
    timeout_slack: ClassVar[float] = 0.5
    """How much later than `timeout` a read may give up, or a cancelled read end."""
    recovery_within: ClassVar[float] = 10.0
    """Seconds within which reads must succeed again once the peer is back (or answers again)."""
    check_timeout: ClassVar[float] = 60.0
    """Seconds a whole check may take before it fails as hung."""

    # --- the blanks ------------------------------------------------------------------------------------------

    @abc.abstractmethod
    def make_peer(self, request: pytest.FixtureRequest) -> P:
        """A new, not yet started peer for one check (`request` gives access to pytest fixtures)."""

    @abc.abstractmethod
    def device(self, peer: P) -> DeviceBinding:
        """A device served by `peer`, declaring the resources to check."""

    @abc.abstractmethod
    def expected(self, peer: P) -> Mapping[str, Value]:
        """The raw value (and so its Python type) each readable resource of `device` reads while nothing has
        been written: every readable resource must be listed."""

    def writes(self, peer: P) -> Mapping[str, Value]:
        """Raw values to write in one `write` and read back; none (the default) skips the check."""
        return {}

    def invalid_resource(self, peer: P) -> ResourceBinding | None:
        """A well-formed resource that the peer refuses (an address beyond its table, a node it does not have)."""
        return None

    def misconfigurations(self, peer: P) -> Sequence[Misconfiguration]:
        """Devices with bad properties or resource attributes, and what each error message must say."""
        return ()

    def make_driver(self, push: Pushes) -> Driver:
        """The driver under test, as the runtime makes it: the class registered for `protocol`."""
        return registry.driver_class(self.protocol)(timeout=self.timeout, push=push)

    # --- running checks --------------------------------------------------------------------------------------

    def _run(
        self,
        request: pytest.FixtureRequest,
        body: Callable[[_Case[P]], Awaitable[None]],
        *,
        needs: Sequence[str] = (),
        peer_running: bool = True,
    ) -> None:
        peer = self.make_peer(request)
        missing = [hook for hook in needs if not _provides(peer, hook)]
        if missing:
            pytest.skip(f"{type(peer).__name__} does not provide {', '.join(f'Peer.{m}' for m in missing)}")

        async def check() -> None:
            try:
                await peer.start()
                if not peer_running:
                    await peer.stop()
                tasks_before = asyncio.all_tasks()
                pushes = Pushes()
                case = _Case(peer, self.make_driver(pushes), self.device(peer), pushes, tasks_before=tasks_before)
                case.driver.on_connection = lambda *report: case.reports.append(report)  # as the runtime does
                case.connections_before = connections_to(peer.port) if peer.port is not None else 0
                try:
                    await body(case)
                finally:
                    await case.driver.close()
            finally:
                await peer.close()

        asyncio.run(asyncio.wait_for(check(), self.check_timeout))

    def _readable(self, binding: DeviceBinding) -> list[str]:
        return [name for name, r in binding.resources.items() if r.spec.readable]

    async def _bounded_read(self, case: _Case[P], names: Sequence[str], device: str | None = None) -> ReadResult:
        """A read (of the case's device unless `device` is named) that must end within the timeout and its slack."""
        read = case.driver.read(device or case.device.name, names)
        try:
            return await asyncio.wait_for(read, self.timeout + self.timeout_slack)
        except TimeoutError:
            pytest.fail(f"a read took longer than timeout {self.timeout} s + slack {self.timeout_slack} s")

    async def _reads_again(self, case: _Case[P], what: str) -> ReadResult:
        """Read until every resource reads (ConnectionLost meanwhile is the outage) within `recovery_within`."""
        names = self._readable(case.device)

        async def succeeds() -> ReadResult | None:
            with contextlib.suppress(ConnectionLost):
                result = await self._bounded_read(case, names)
                return None if result.errors else result
            return None

        result: ReadResult | None = await async_wait_for(succeeds, within=self.recovery_within, what=what)
        assert result is not None
        return result

    async def _goes_down(self, case: _Case[P]) -> None:
        """Read until one fails with ConnectionLost (a driver may learn of a closed connection a little late)."""

        async def fails() -> bool:
            try:
                await self._bounded_read(case, self._readable(case.device))
            except ConnectionLost:
                return True
            return False

        down: bool = await async_wait_for(fails, within=self.recovery_within, interval=0.05, what="a read to fail")
        assert down

    def _check_values(self, case: _Case[P], result: ReadResult, expected: Mapping[str, Value]) -> None:
        assert not result.errors, f"resources failed: {result.errors}"
        assert result.values.keys() == expected.keys(), f"read {sorted(result.values)}, expected {sorted(expected)}"
        for name, want in expected.items():
            got = result.values[name]
            assert type(got) is type(want) and got == want, f"resource {name!r}: read {got!r}, expected {want!r}"
            try:
                case.device.resources[name].spec.to_value(got)
            except ReadingError as error:
                pytest.fail(f"resource {name!r}: the runtime cannot take {got!r} for its profile: {error}")

    # --- the checks ------------------------------------------------------------------------------------------

    def test_the_entry_point_serves_the_protocol(self) -> None:
        assert self.protocol in registry.available_protocols(), f"no {registry.ENTRY_POINT_GROUP} entry point"
        cls = registry.driver_class(self.protocol)
        assert isinstance(self.make_driver(Pushes()), cls)

    def test_every_resource_reads_its_expected_value(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            expected = self.expected(case.peer)
            unlisted = set(self._readable(case.device)) - expected.keys()
            assert not unlisted, f"expected() lists no value for the readable resources {sorted(unlisted)}"
            await case.driver.add_device(case.device)
            result = await self._bounded_read(case, list(expected))
            self._check_values(case, result, expected)
            assert result.requests >= 0

        self._run(request, body)

    def test_written_values_read_back(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            written = self.writes(case.peer)
            if not written:
                pytest.skip("writes() gives no values to write")
            await case.driver.add_device(case.device)
            await asyncio.wait_for(case.driver.write(case.device.name, written), self.timeout + self.timeout_slack)
            readable = {name: value for name, value in written.items() if case.device.resources[name].spec.readable}
            self._check_values(case, await self._bounded_read(case, list(readable)), readable)

        self._run(request, body)

    def test_misconfigured_devices_are_refused_when_added(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            bad = self.misconfigurations(case.peer)
            if not bad:
                pytest.skip("misconfigurations() gives no misconfigured device")
            for wrong in bad:
                with pytest.raises(ConfigurationError) as refused:
                    await case.driver.add_device(wrong.device)
                assert wrong.message in str(refused.value), f"{refused.value} does not say {wrong.message!r}"
            await case.driver.add_device(case.device)  # the driver is still fine
            self._check_values(case, await self._bounded_read(case, list(self.expected(case.peer))),
                               self.expected(case.peer))  # fmt: skip

        self._run(request, body)

    def test_a_resource_the_device_refuses_fails_alone(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            invalid = self.invalid_resource(case.peer)
            if invalid is None:
                pytest.skip("invalid_resource() gives no resource the device refuses")
            binding = device(case.device.name, case.device.protocol, case.device.properties,
                             [*case.device.resources.values(), invalid])  # fmt: skip
            await case.driver.add_device(binding)
            expected = self.expected(case.peer)
            result = await self._bounded_read(case, [*expected, invalid.name])
            assert set(result.errors) == {invalid.name}, f"errors: {result.errors}"
            assert isinstance(result.errors[invalid.name], ResourceFailure), repr(result.errors[invalid.name])
            self._check_values(case, ReadResult(values=result.values), expected)

        self._run(request, body)

    def test_a_peer_that_is_down_from_the_start_is_connection_lost_until_it_comes(
        self, request: pytest.FixtureRequest
    ) -> None:
        async def body(case: _Case[P]) -> None:
            await case.driver.add_device(case.device)  # must not need the peer: drivers connect lazily
            with pytest.raises(ConnectionLost):
                await self._bounded_read(case, self._readable(case.device))
            await case.peer.start()
            result = await self._reads_again(case, "a read once the peer is up")
            self._check_values(case, result, self.expected(case.peer))

        self._run(request, body, peer_running=False)

    def test_reads_resume_after_the_peer_restarts(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            await case.driver.add_device(case.device)
            self._check_values(case, await self._bounded_read(case, list(self.expected(case.peer))),
                               self.expected(case.peer))  # fmt: skip
            await case.peer.stop()
            await self._goes_down(case)
            for _ in range(3):  # and it stays down, without hanging, while the peer is away
                with pytest.raises(ConnectionLost):
                    await self._bounded_read(case, self._readable(case.device))
            written = self.writes(case.peer)
            if written:
                with pytest.raises(ConnectionLost):
                    await asyncio.wait_for(case.driver.write(case.device.name, written),
                                           self.timeout + self.timeout_slack)  # fmt: skip
            await case.peer.start()
            result = await self._reads_again(case, "a read after the peer restarted")
            self._check_values(case, result, self.expected(case.peer))

        self._run(request, body)

    def test_a_peer_that_never_answers_fails_the_read_within_the_timeout(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            await case.driver.add_device(case.device)
            await self._bounded_read(case, self._readable(case.device))  # connected
            await case.peer.hang()
            with pytest.raises(ConnectionLost):
                await self._bounded_read(case, self._readable(case.device))
            await case.peer.heal()
            result = await self._reads_again(case, "a read once the peer answers again")
            self._check_values(case, result, self.expected(case.peer))

        self._run(request, body, needs=("hang", "heal"))

    def test_a_read_cancelled_in_flight_ends_at_once_and_the_driver_stays_usable(
        self, request: pytest.FixtureRequest
    ) -> None:
        async def body(case: _Case[P]) -> None:
            names = self._readable(case.device)
            await case.driver.add_device(case.device)
            await self._bounded_read(case, names)
            await case.peer.hang()
            sent = case.peer.requests_received()
            read = asyncio.create_task(case.driver.read(case.device.name, names))
            await async_wait_for(lambda: case.peer.requests_received() > sent, within=self.recovery_within,
                                 what="the read's request to reach the peer")  # fmt: skip
            read.cancel()
            done, _ = await asyncio.wait({read}, timeout=self.timeout_slack)
            assert done, f"a cancelled read was still running {self.timeout_slack} s later"
            assert read.cancelled(), f"the cancelled read ended otherwise: {read}"
            await case.peer.heal()
            result = await self._reads_again(case, "a read after the cancelled one")
            self._check_values(case, result, self.expected(case.peer))  # no stale reply taken for these values

        self._run(request, body, needs=("hang", "heal", "requests_received"))

    def test_values_the_device_sends_reach_the_push_sink(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            await case.driver.add_device(case.device)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.recovery_within
            while True:
                source, values = await case.peer.push()
                with contextlib.suppress(AssertionError):
                    arrived = functools.partial(case.pushes.got, case.device.name, source, values)
                    await async_wait_for(arrived, within=min(1.0, max(0.0, deadline - loop.time())))
                    return
                if loop.time() >= deadline:
                    pytest.fail(f"{source} {values} never reached the push sink (got {case.pushes.items[-5:]})")

        self._run(request, body, needs=("push",))

    def test_a_pushing_device_follows_its_peer_down_and_up_without_being_read(
        self, request: pytest.FixtureRequest
    ) -> None:
        """A device that only pushes is never read, so no read can tell the runtime that its peer is gone: the
        driver must (`Driver.connection_changed`), or the device would stay UP while nothing comes."""

        async def body(case: _Case[P]) -> None:
            name = case.device.name

            def reported(up: bool) -> bool:
                return [r[1] for r in case.reports if r[0] == name][-1:] == [up]

            await case.driver.add_device(case.device)
            await async_wait_for(lambda: reported(True), within=self.recovery_within, what="a report: reachable")
            await case.peer.stop()
            await async_wait_for(lambda: reported(False), within=self.recovery_within, what="a report: unreachable")
            await case.peer.start()
            await async_wait_for(lambda: reported(True), within=self.recovery_within, what="a report: back")

        self._run(request, body, needs=("push",))

    def test_devices_read_at_the_same_time_get_their_own_answers(self, request: pytest.FixtureRequest) -> None:
        """The runtime polls different devices of one driver concurrently (never one device twice at once)."""

        async def body(case: _Case[P]) -> None:
            twin = DeviceBinding(f"{case.device.name}-twin", case.device.protocol, case.device.properties,
                                 case.device.resources)  # fmt: skip
            await case.driver.add_device(case.device)
            await case.driver.add_device(twin)
            expected = self.expected(case.peer)
            for _ in range(5):
                results = await asyncio.gather(*(self._bounded_read(case, list(expected), name)
                                                 for name in (case.device.name, twin.name)))  # fmt: skip
                for result in results:
                    self._check_values(case, result, expected)

        self._run(request, body)

    def test_a_removed_device_is_forgotten_and_can_be_added_again(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            names = self._readable(case.device)
            await case.driver.add_device(case.device)
            await self._bounded_read(case, names)
            await case.driver.remove_device(case.device.name)
            with pytest.raises(DriverError):
                await self._bounded_read(case, names)
            await self._released(case, "the removed device's connection")
            await case.driver.add_device(case.device)
            self._check_values(case, await self._bounded_read(case, list(self.expected(case.peer))),
                               self.expected(case.peer))  # fmt: skip

        self._run(request, body)

    def test_close_releases_everything_and_may_be_called_twice(self, request: pytest.FixtureRequest) -> None:
        async def body(case: _Case[P]) -> None:
            await case.driver.add_device(case.device)
            await self._bounded_read(case, self._readable(case.device))
            await case.driver.close()
            await case.driver.close()
            await self._released(case, "the driver's connections")
            current = asyncio.current_task()

            def leftover() -> set[asyncio.Task[Any]]:
                return {t for t in asyncio.all_tasks() - case.tasks_before if t is not current and not t.done()}

            await async_wait_for(lambda: not leftover(), within=self.recovery_within,
                                 what="the driver's tasks to end after close")  # fmt: skip

        self._run(request, body)

    async def _released(self, case: _Case[P], what: str) -> None:
        port = case.peer.port
        if port is not None:
            await async_wait_for(lambda: connections_to(port) <= case.connections_before,
                                 within=self.recovery_within, what=f"{what} to be closed")  # fmt: skip
