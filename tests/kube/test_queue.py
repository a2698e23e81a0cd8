"""The work queue's promises, which every controller relies on (pure asyncio, no API server needed)."""

from __future__ import annotations

import asyncio

import pytest

from yurt_iot.kube import ExponentialRateLimiter, ShutDown, WorkQueue
from yurt_iot.testing.waiting import async_test


@async_test(timeout=10)
async def test_a_key_added_twice_before_processing_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "a", "a"):
        queue.add(key)
    assert len(queue) == 2
    assert [await queue.get(), await queue.get()] == ["a", "b"]
    assert len(queue) == 0


@async_test(timeout=10)
async def test_a_key_re_added_while_processing_comes_back_only_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "a key in process must not be handed to a second worker"
    second_worker = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not second_worker.done()
    queue.done(key)
    assert await asyncio.wait_for(second_worker, 5) == "a"
    queue.done("a")
    assert len(queue) == 0 and queue.processing == 0


@async_test(timeout=10)
async def test_add_after_hands_the_key_out_later_and_the_earliest_time_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 3600)
    queue.add_after("a", 0.01)
    queue.add_after("a", 7200)
    assert len(queue) == 0 and queue.waiting == 1
    assert await asyncio.wait_for(queue.get(), 5) == "a"
    assert queue.waiting == 0


def test_rate_limited_delays_double_per_key_up_to_the_cap_and_forget_resets() -> None:
    limiter: ExponentialRateLimiter[str] = ExponentialRateLimiter(base=0.005, cap=1000.0)
    delays = [limiter.when("a") for _ in range(20)]
    assert delays[:4] == pytest.approx([0.005, 0.01, 0.02, 0.04])
    assert delays[-1] == 1000.0
    assert limiter.when("b") == pytest.approx(0.005), "each key has its own backoff"
    assert limiter.num_requeues("a") == 20
    limiter.forget("a")
    assert limiter.num_requeues("a") == 0
    assert limiter.when("a") == pytest.approx(0.005)


def test_rate_limiter_refuses_a_base_above_the_cap() -> None:
    with pytest.raises(ValueError, match="base"):
        ExponentialRateLimiter(base=5, cap=1)


@async_test(timeout=10)
async def test_add_rate_limited_counts_requeues_until_forget() -> None:
    queue: WorkQueue[str] = WorkQueue(rate_limiter=ExponentialRateLimiter(base=0.001, cap=0.01))
    for attempt in range(1, 4):
        queue.add_rate_limited("a")
        assert queue.num_requeues("a") == attempt
        key = await asyncio.wait_for(queue.get(), 5)
        queue.done(key)
    queue.forget("a")
    assert queue.num_requeues("a") == 0


@async_test(timeout=10)
async def test_shutdown_drains_queued_keys_then_stops_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.add_after("late", 3600)
    idle_worker = asyncio.create_task(_drain(queue))
    queue.shutdown()
    queue.add("ignored")
    assert await asyncio.wait_for(idle_worker, 5) == ["a", "b"]
    assert queue.waiting == 0


@async_test(timeout=10)
async def test_shutdown_without_drain_drops_queued_keys_and_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.shutdown(drain=False)
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 5)
    queue.add("a")
    assert await _drain(queue) == []


async def _drain(queue: WorkQueue[str]) -> list[str]:
    taken = []
    while True:
        try:
            key = await queue.get()
        except ShutDown:
            return taken
        taken.append(key)
        queue.done(key)
