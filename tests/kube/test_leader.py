"""Leader election on a real Lease: one leader at a time, hand-over on release or expiry, work stops on loss."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from yurt_iot.kube import LEASES, KubeClient, KubeMetrics, LeaderElector, LeadershipLost
from yurt_iot.testing.controlplane import ControlPlane
from yurt_iot.testing.waiting import async_test, async_wait_for

from .helpers import client_for

LEASE = "manager"


def elector(kube: KubeClient, namespace: str, identity: str, **kwargs: bool) -> LeaderElector:
    """Short durations so hand-overs take about a second."""
    return LeaderElector(
        kube, LEASE, namespace, identity, lease_duration=2, renew_deadline=1.5, retry_period=0.2, **kwargs
    )


class Work:
    """Stand-in for running the controllers: records when it runs and how it ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    async def __call__(self) -> None:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def holder(kube: KubeClient, namespace: str) -> str | None:
    lease = await kube.resource(LEASES, namespace).get(LEASE)
    return lease["spec"].get("holderIdentity")  # type: ignore[no-any-return]


@async_test(timeout=60)
async def test_only_one_leads_and_the_other_takes_over_after_a_release(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with client_for(control_plane) as kube:
        first, second = elector(kube, namespace, "first"), elector(kube, namespace, "second")
        first_work, second_work = Work(), Work()
        first_run = asyncio.create_task(first.run(first_work))
        async with asyncio.timeout(10):
            await first_work.started.wait()
        second_run = asyncio.create_task(second.run(second_work))
        try:
            renewals: set[str] = set()

            async def renewed_three_times() -> bool:
                lease = await kube.resource(LEASES, namespace).get(LEASE)
                renewals.add(lease["spec"]["renewTime"])
                return len(renewals) >= 3

            await async_wait_for(renewed_three_times, within=10, interval=0.1)
            assert first.is_leader and not second.is_leader and not second_work.started.is_set()
            assert await holder(kube, namespace) == "first"

            first_run.cancel()  # shutting down: releases the Lease
            await asyncio.gather(first_run, return_exceptions=True)
            assert first_work.cancelled and not first.is_leader
            async with asyncio.timeout(5):
                await second_work.started.wait()
            assert second.is_leader
            lease = await kube.resource(LEASES, namespace).get(LEASE)
            assert lease["spec"]["holderIdentity"] == "second"
            assert lease["spec"]["leaseTransitions"] == 1
        finally:
            for task in (first_run, second_run):
                task.cancel()
            await asyncio.gather(first_run, second_run, return_exceptions=True)


@async_test(timeout=60)
async def test_a_leader_that_stops_renewing_is_replaced_once_the_lease_expires(
    control_plane: ControlPlane, namespace: str
) -> None:
    async with client_for(control_plane) as kube:
        crashed = elector(kube, namespace, "crashed", release_on_cancel=False)
        successor = elector(kube, namespace, "successor")
        crashed_work, successor_work = Work(), Work()
        crashed_run = asyncio.create_task(crashed.run(crashed_work))
        async with asyncio.timeout(10):
            await crashed_work.started.wait()
        successor_run = asyncio.create_task(successor.run(successor_work))
        try:
            crashed_run.cancel()  # like a kill -9: no release
            await asyncio.gather(crashed_run, return_exceptions=True)
            assert await holder(kube, namespace) == "crashed"
            async with asyncio.timeout(10):
                await successor_work.started.wait()
            assert await holder(kube, namespace) == "successor"
        finally:
            successor_run.cancel()
            await asyncio.gather(successor_run, return_exceptions=True)


@async_test(timeout=60)
async def test_losing_the_lease_stops_the_work(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        leader, work = elector(kube, namespace, "leader"), Work()
        run = asyncio.create_task(leader.run(work))
        async with asyncio.timeout(10):
            await work.started.wait()
        leases = kube.resource(LEASES, namespace)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        # Another party takes the Lease over (e.g. an operator or a replica with a skewed view).
        await leases.patch(LEASE, {"spec": {"holderIdentity": "usurper", "leaseDurationSeconds": 60, "renewTime": now}})
        with pytest.raises(LeadershipLost):
            await asyncio.wait_for(run, 10)
        assert work.cancelled and not leader.is_leader
        assert await holder(kube, namespace) == "usurper", "a leader that lost does not release someone else's Lease"


@async_test(timeout=60)
async def test_work_that_finishes_releases_the_lease(control_plane: ControlPlane, namespace: str) -> None:
    async with client_for(control_plane) as kube:
        metrics = KubeMetrics()
        leading = []

        def leader_gauge() -> float | None:
            return metrics.registry.get_sample_value("yurt_iot_leader", {"lease": f"{namespace}/{LEASE}"})

        async def work() -> None:
            leading.append(leader_gauge())

        short_lived = LeaderElector(
            kube, LEASE, namespace, lease_duration=2, renew_deadline=1.5, retry_period=0.2, metrics=metrics
        )
        await short_lived.run(work)
        assert leading == [1.0]
        assert leader_gauge() == 0.0
        assert await holder(kube, namespace) is None


def test_durations_must_leave_time_to_stop_before_another_takes_over() -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        LeaderElector(None, "x", "ns", lease_duration=10, renew_deadline=10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="renew_deadline"):
        LeaderElector(None, "x", "ns", lease_duration=15, renew_deadline=2, retry_period=2)  # type: ignore[arg-type]
