"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Several replicas of a manager may run; only the holder of the Lease runs controllers, so two processes
never reconcile the same objects. The holder renews the Lease every `retry_period`; the others take it
over once it has not been renewed for `lease_duration`, judged by their own clock from when they last saw
it change (so clock skew between machines does not matter). A holder that cannot renew within
`renew_deadline` stops its work *before* the others may take over (renew_deadline < lease_duration), and a
holder that shuts down releases the Lease so a successor starts at once. For that promise to hold, the
work must stop within lease_duration - renew_deadline of being cancelled: keep the controllers'
`shutdown_timeout` below it.

    elector = LeaderElector(kube, "yurt-iot-manager", "kube-system")
    await elector.run(run_controllers)   # returns when run_controllers returns; raises LeadershipLost
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from yurt_iot.api.meta import ResourceType
from yurt_iot.kube import errors
from yurt_iot.kube.client import KubeClient
from yurt_iot.kube.metrics import KubeMetrics
from yurt_iot.kube.objects import Obj

__all__ = ["LEASES", "LeaderElector", "LeadershipLost"]

logger = logging.getLogger(__name__)

LEASES = ResourceType("coordination.k8s.io", "v1", "Lease", "leases")

#: client-go's JitterFactor: waits between acquire attempts are retry_period * (1 .. 2.2).
_JITTER = 1.2


class LeadershipLost(Exception):
    """The Lease could not be renewed within the renew deadline (or another holder took it): work was stopped."""


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Runs work only while holding the Lease `namespace/name`."""

    def __init__(
        self,
        client: KubeClient,
        name: str,
        namespace: str,
        identity: str | None = None,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        release_on_cancel: bool = True,
        metrics: KubeMetrics | None = None,
    ) -> None:
        """Durations in seconds, client-go's defaults; the Lease stores `lease_duration` rounded up to whole
        seconds. `identity` defaults to hostname plus a random suffix (unique per process)."""
        if lease_duration <= renew_deadline:
            raise ValueError(f"lease_duration: must exceed renew_deadline ({renew_deadline}), got {lease_duration}")
        if renew_deadline <= _JITTER * retry_period:
            raise ValueError(
                f"renew_deadline: must exceed {_JITTER} * retry_period ({_JITTER * retry_period}), got {renew_deadline}"
            )
        self.name, self.namespace = name, namespace
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.lease_duration, self.renew_deadline, self.retry_period = lease_duration, renew_deadline, retry_period
        self.release_on_cancel = release_on_cancel
        self._leases = client.resource(LEASES, namespace)
        self._metrics = metrics
        self._lease: Obj | None = None  # the Lease as last read or written
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = 0.0  # loop time when the spec last changed, as far as we saw
        self._leading = False

    def __repr__(self) -> str:
        return f"<LeaderElector {self.namespace}/{self.name} as {self.identity}>"

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def holder(self) -> str | None:
        """The holder identity last seen on the Lease (None if unknown or released)."""
        return (self._observed_spec or {}).get("holderIdentity") or None

    async def run(self, work: Callable[[], Awaitable[None]]) -> None:
        """Wait until this process leads, then run `work()` while renewing the Lease.

        Returns when `work()` returns (the Lease is released). If renewing fails, `work()` is cancelled
        (let it stop gracefully) and `LeadershipLost` is raised. If `run` itself is cancelled, `work()` is
        cancelled and the Lease released (unless `release_on_cancel` is false).
        """
        await self._acquire()
        self._set_leading(True)
        logger.info("%r: became leader", self)
        work_task = asyncio.ensure_future(work())
        renew_task = asyncio.create_task(self._renew_until_lost())
        lost = False
        try:
            await asyncio.wait({work_task, renew_task}, return_when=asyncio.FIRST_COMPLETED)
            lost = renew_task.done()
            if lost:
                raise LeadershipLost(f"{self!r}: could not renew the Lease within {self.renew_deadline} s")
            work_task.result()  # work's own exception, if it failed
        finally:
            work_finished = work_task.done()  # else run() itself was cancelled
            for task in (renew_task, work_task):
                task.cancel()
            await asyncio.gather(renew_task, work_task, return_exceptions=True)
            self._set_leading(False)
            if not lost:
                await self._release(cancelled=not work_finished)

    async def _acquire(self) -> None:
        # Polling is the protocol here: the Lease's expiry is only learnt by reading it again.
        while not await self._try_acquire_or_renew():  # noqa: ASYNC110
            await asyncio.sleep(self.retry_period * (1 + _JITTER * random.random()))

    async def _renew_until_lost(self) -> None:
        """Returns when a renewal round did not succeed within the renew deadline."""
        while True:
            await asyncio.sleep(self.retry_period)
            try:
                async with asyncio.timeout(self.renew_deadline):
                    while not await self._try_acquire_or_renew():  # noqa: ASYNC110
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                logger.warning("%r: failed to renew the Lease within %.1f s; stopping", self, self.renew_deadline)
                return

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt: take a free or expired Lease, or renew ours; False if another process holds it."""
        loop = asyncio.get_running_loop()
        now = datetime.now(UTC)
        try:
            lease = await self._leases.get(self.name)
        except errors.NotFound:
            spec = self._spec({}, now)
            try:
                lease = await self._leases.create({"metadata": {"name": self.name}, "spec": spec})
            except (errors.AlreadyExists, errors.Conflict):
                return False
            except errors.KubeError as exc:
                logger.warning("%r: cannot create the Lease: %s", self, exc)
                return False
            self._observe(lease, loop.time())
            return True
        except errors.KubeError as exc:
            logger.warning("%r: cannot read the Lease: %s", self, exc)
            return False
        loop_now = loop.time()  # when we saw it: the holder's renewal is at least this recent
        old = lease.get("spec") or {}
        if old != self._observed_spec:
            self._observe(lease, loop_now)
        holder = old.get("holderIdentity")
        if holder and holder != self.identity:
            expires = self._observed_at + float(old.get("leaseDurationSeconds") or 0)
            if loop_now < expires:
                return False
        lease = {**lease, "spec": self._spec(old, now)}
        try:
            lease = await self._leases.replace(lease)  # carries its resourceVersion: a race loses with Conflict
        except errors.Conflict:
            return False
        except errors.KubeError as exc:
            logger.warning("%r: cannot update the Lease: %s", self, exc)
            return False
        self._observe(lease, loop_now)
        return True

    def _spec(self, old: dict[str, Any], now: datetime) -> dict[str, Any]:
        spec = dict(old)
        stamp = _micro_time(now)
        if old.get("holderIdentity") != self.identity:
            spec["acquireTime"] = stamp
            # Taking over (even a released Lease) is a transition; a Lease we create starts at 0.
            spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + (1 if old else 0)
        spec.setdefault("acquireTime", stamp)
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=math.ceil(self.lease_duration), renewTime=stamp)
        return spec

    def _observe(self, lease: Obj, loop_now: float) -> None:
        self._lease = lease
        self._observed_spec = lease.get("spec") or {}
        self._observed_at = loop_now

    async def _release(self, *, cancelled: bool) -> None:
        """Hand the Lease back (holder cleared, 1 s duration) so a successor need not wait for it to expire."""
        if (cancelled and not self.release_on_cancel) or self._lease is None or self.holder != self.identity:
            return
        now = _micro_time(datetime.now(UTC))
        old = self._lease.get("spec") or {}
        spec = {
            "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
            "leaseTransitions": int(old.get("leaseTransitions") or 0),
        }  # fmt: skip
        with contextlib.suppress(errors.KubeError, TimeoutError):
            async with asyncio.timeout(self.renew_deadline):
                self._observe(await self._leases.replace({**self._lease, "spec": spec}), 0.0)
                logger.info("%r: released the Lease", self)

    def _set_leading(self, leading: bool) -> None:
        self._leading = leading
        if self._metrics is not None:
            self._metrics.leader.labels(f"{self.namespace}/{self.name}").set(1 if leading else 0)
