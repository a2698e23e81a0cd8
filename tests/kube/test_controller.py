"""The reconcile runner and the write helpers, end to end: informer -> queue -> reconcile -> API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from yurt_iot.api.iot import Device
from yurt_iot.kube import (
    Conflict,
    Controller,
    ExponentialRateLimiter,
    Informer,
    KubeMetrics,
    ObjectKey,
    Result,
    TerminalError,
    ensure_finalizer,
    generation_changed,
    patch_status_if_changed,
    remove_finalizer,
)
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.waiting import async_test, async_wait_for

from .helpers import client_for, device

FINALIZER = "iot.openyurt.io/device"


def fast_retries() -> ExponentialRateLimiter[ObjectKey]:
    return ExponentialRateLimiter(base=0.001, cap=0.05)


@contextlib.asynccontextmanager
async def running(*runners: Informer | Controller) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(r.run()) for r in runners]
    try:
        for r in runners:
            if isinstance(r, Informer):
                async with asyncio.timeout(10):
                    await r.wait_synced()
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def reconciles(registry: CollectorRegistry, controller: str, result: str) -> float:
    return registry.get_sample_value("yurt_iot_reconciles_total", {"controller": controller, "result": result}) or 0


@async_test(timeout=60)
async def test_a_failing_reconcile_is_retried_until_it_succeeds(control_plane: ControlPlane, namespace: str) -> None:
    metrics = KubeMetrics()
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        await devices.create(device("d1"))
        informer = Informer(devices)
        attempts = 0

        async def reconcile(key: ObjectKey) -> Result:
            nonlocal attempts
            attempts += 1
            if attempts < 3:
                raise ConnectionError("edge platform unreachable")
            obj = informer.store.get_by_key(key)
            assert obj is not None
            await patch_status_if_changed(devices, obj, {"synced": True})
            return Result()

        controller = Controller("devices", reconcile, rate_limiter=fast_retries(), metrics=metrics)
        controller.watch(informer, predicate=generation_changed)
        async with running(informer, controller):
            await async_wait_for(
                lambda: (informer.store.get(namespace, "d1") or {}).get("status") and not controller.queue.processing,
                within=10,
            )
            assert attempts == 3
            assert controller.queue.num_requeues(ObjectKey(namespace, "d1")) == 0, "success forgets the failures"
            # Our own status write came back through the informer; generation_changed kept it out of the queue.
            assert len(controller.queue) == 0 and controller.queue.processing == 0
        assert reconciles(metrics.registry, "devices", "error") == 2
        assert reconciles(metrics.registry, "devices", "success") == 1
        assert (await devices.get("d1"))["status"] == {"synced": True}


@async_test(timeout=60)
async def test_status_is_written_only_when_it_changes(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        created = await devices.create(device("d1"))
        first = await patch_status_if_changed(devices, created, {"synced": True, "edgeId": "e-1"})
        assert first["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]

        again = await patch_status_if_changed(devices, first, {"synced": True})
        assert again is first
        assert (await devices.get("d1"))["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]

        cleared = await patch_status_if_changed(devices, first, {"edgeId": None})
        assert cleared["status"] == {"synced": True}


@async_test(timeout=60)
async def test_finalizers_are_added_once_and_removing_the_last_one_completes_deletion(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        obj = await ensure_finalizer(devices, await devices.create(device("d1")), FINALIZER)
        assert obj["metadata"]["finalizers"] == [FINALIZER]
        assert await ensure_finalizer(devices, obj, FINALIZER) is obj, "present already: no write"

        await devices.delete("d1")
        terminating = await devices.get("d1")
        assert terminating["metadata"]["deletionTimestamp"], "the finalizer holds the object back"

        await remove_finalizer(devices, terminating, FINALIZER)
        assert not [d for d in (await devices.list()).items if d["metadata"]["name"] == "d1"]


@async_test(timeout=60)
async def test_finalizer_patches_refuse_to_overwrite_a_concurrent_change(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        stale = await devices.create(device("d1"))
        await devices.patch("d1", {"metadata": {"finalizers": ["someone.else/cleanup"]}})
        with pytest.raises(Conflict):
            await ensure_finalizer(devices, stale, FINALIZER)
        assert (await devices.get("d1"))["metadata"]["finalizers"] == ["someone.else/cleanup"]


@async_test(timeout=30)
async def test_one_reconcile_per_key_at_a_time_and_keys_in_parallel() -> None:
    running_now: dict[str, int] = {}
    most: dict[str, int] = {}
    calls: list[str] = []
    both_running = asyncio.Event()
    release = asyncio.Event()

    async def reconcile(key: ObjectKey) -> None:
        running_now[key.name] = running_now.get(key.name, 0) + 1
        most[key.name] = max(most.get(key.name, 0), running_now[key.name])
        calls.append(key.name)
        if len([n for n, c in running_now.items() if c]) == 2:
            both_running.set()
        await release.wait()
        running_now[key.name] -= 1

    controller = Controller("parallel", reconcile, workers=4)
    async with running(controller):
        controller.enqueue(ObjectKey("ns", "a"))
        controller.enqueue(ObjectKey("ns", "b"))
        async with asyncio.timeout(5):
            await both_running.wait()
        for _ in range(5):
            controller.enqueue(ObjectKey("ns", "a"))  # while "a" is being reconciled
        release.set()
        await async_wait_for(lambda: calls.count("a") == 2 and controller.queue.processing == 0, within=5)
    assert most == {"a": 1, "b": 1}
    assert sorted(calls) == ["a", "a", "b"], "five adds during processing coalesce into one more reconcile"


@async_test(timeout=30)
async def test_requeue_after_revisits_and_terminal_errors_are_not_retried() -> None:
    calls: list[str] = []

    async def reconcile(key: ObjectKey) -> Result:
        calls.append(key.name)
        if key.name == "invalid":
            raise TerminalError("spec.profileName: no such profile")
        return Result(requeue_after=0.01) if calls.count(key.name) == 1 else Result()

    metrics = KubeMetrics()
    controller = Controller("outcomes", reconcile, metrics=metrics)
    async with running(controller):
        controller.enqueue(ObjectKey("", "invalid"))
        controller.enqueue(ObjectKey("", "polled"))
        await async_wait_for(lambda: calls.count("polled") == 2 and controller.queue.processing == 0, within=5)
        assert controller.queue.waiting == 0, "the terminal error scheduled no retry"
    assert calls.count("invalid") == 1
    assert reconciles(metrics.registry, "outcomes", "terminal") == 1
    assert reconciles(metrics.registry, "outcomes", "requeue_after") == 1


@async_test(timeout=30)
async def test_stop_lets_reconciles_in_flight_finish_and_takes_no_new_work() -> None:
    started = asyncio.Event()
    finish = asyncio.Event()
    finished: list[str] = []

    async def reconcile(key: ObjectKey) -> None:
        started.set()
        await finish.wait()
        finished.append(key.name)

    controller = Controller("graceful", reconcile, shutdown_timeout=10)
    run = asyncio.create_task(controller.run())
    controller.enqueue(ObjectKey("", "in-flight"))
    async with asyncio.timeout(5):
        await started.wait()
    controller.enqueue(ObjectKey("", "queued"))
    controller.stop()
    await asyncio.sleep(0)
    assert not run.done(), "stop waits for the reconcile in flight"
    finish.set()
    await asyncio.wait_for(run, 5)
    assert finished == ["in-flight"]


@async_test(timeout=30)
async def test_a_reconcile_that_outlives_the_shutdown_deadline_is_cancelled() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def reconcile(key: ObjectKey) -> None:
        started.set()
        try:
            await asyncio.Event().wait()  # hangs, e.g. on a device that never answers
        except asyncio.CancelledError:
            cancelled.set()
            raise

    controller = Controller("stuck", reconcile, shutdown_timeout=0.05)
    run = asyncio.create_task(controller.run())
    controller.enqueue(ObjectKey("", "stuck"))
    async with asyncio.timeout(5):
        await started.wait()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
    assert cancelled.is_set()


@async_test(timeout=60)
async def test_watch_can_map_an_object_to_the_keys_it_affects(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        devices = kube.resource(Device, namespace)
        informer = Informer(devices)
        reconciled: list[ObjectKey] = []

        async def reconcile(key: ObjectKey) -> None:
            reconciled.append(key)

        services = Controller("deviceservices", reconcile)
        # A device change concerns the DeviceService that serves it.
        services.watch(informer, map_to=lambda d: [ObjectKey(namespace, d["spec"]["serviceName"])])
        async with running(informer, services):
            await devices.create(device("d1"))
            await async_wait_for(lambda: reconciled, within=10)
        assert reconciled == [ObjectKey(namespace, "modbus")]
