"""Tests for the disk-backed event spool, including a real ``kill -9`` of a writing process."""

from __future__ import annotations

import asyncio
import inspect
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from yurt_iot.runtime.spool import OverflowPolicy, Spool, SpooledEvent, SpoolError

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
T = TypeVar("T")


def _payload(seq: int) -> bytes:
    """Deterministic payload of varying size (0.5-3.5 KB) for event number `seq`."""
    return b'{"seq": %d, "pad": "' % seq + b"x" * (500 + seq * 37 % 3000) + b'"}'


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def put(spool: Spool, topic: str, payload: bytes) -> int:
    """Append an event that must be accepted; return its id."""
    event_id = spool.append(topic, payload)
    assert event_id is not None
    return event_id


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def all_events(spool: Spool) -> list[SpooledEvent]:
    return spool.peek(1_000_000)


async def stored_events(directory: Path) -> list[SpooledEvent]:
    async with Spool(directory, max_bytes=1 << 30, segment_bytes=64 * 1024) as spool:
        return all_events(spool)


def test_fifo_across_segment_rollover(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=16 * 1024) as spool:
            ids = [put(spool, f"dev/{seq}", _payload(seq)) for seq in range(300)]
            assert ids == sorted(ids)
            assert len(segment_files(tmp_path)) > 10
            assert [(e.id, e.topic, e.payload) for e in all_events(spool)] == [
                (event_id, f"dev/{seq}", _payload(seq)) for seq, event_id in enumerate(ids)
            ]
            # A publisher's window: continue after the last id handed out.
            windowed: list[SpooledEvent] = []
            after = None
            while batch := spool.peek(7, after):
                windowed += batch
                after = batch[-1].id
            assert [e.id for e in windowed] == ids
            assert spool.depth == 300 and spool.appended == 300

    run(body())


def test_out_of_order_acks_advance_only_the_contiguous_prefix(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=MIB) as spool:
            a, b, c, d, e = (put(spool, "t", bytes([i])) for i in range(5))
            size_before = spool.size_bytes
            spool.ack(c)
            spool.ack(b)
            assert spool.depth == 3
            assert spool.size_bytes == size_before  # nothing before a was passed: all still held
            assert [ev.id for ev in spool.peek(10)] == [a, d, e]  # acked ones are not handed out again
            spool.ack(c)  # a duplicate PUBACK is ignored
            assert spool.acked == 2
            spool.ack(a)  # the head passes a, b and c
            assert spool.depth == 2 and spool.acked == 3
            assert spool.size_bytes < size_before
            assert [ev.id for ev in spool.peek(10)] == [d, e]
            spool.ack(a)  # below the head: ignored
            with pytest.raises(ValueError, match="never appended"):
                spool.ack(e + 1)

    run(body())


def test_reopen_keeps_exactly_the_unacked_events_in_order(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            ids = [put(spool, f"dev/{seq}", _payload(seq)) for seq in range(60)]
            for i in [*range(0, 20), 25, 26, 40, 59]:
                spool.ack(ids[i])
            expected = [(ev.id, ev.topic, ev.payload) for ev in all_events(spool)]
            assert len(expected) == 36
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            assert [(ev.id, ev.topic, ev.payload) for ev in all_events(spool)] == expected
            assert spool.depth == 36
            assert put(spool, "dev/new", b"new") > expected[-1][0]  # ids never go back
            spool.ack(ids[20])
            assert spool.peek(1)[0].id == ids[21]

    run(body())


def _child_code(directory: Path, first_seq: int) -> str:
    return textwrap.dedent(inspect.getsource(_payload)) + textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from yurt_iot.runtime.spool import Spool

        async def main() -> None:
            async with Spool(Path({str(directory)!r}), max_bytes=1 << 30, segment_bytes=64 * 1024) as spool:
                seq = {first_seq}
                while True:
                    event_id = spool.append(f"dev/{{seq}}", _payload(seq))
                    print(seq, event_id, flush=True)
                    seq += 1

        asyncio.run(main())
        """
    )


def _read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float) -> bytes:
    """Read the child's stdout until it holds `count` complete lines; return what was read."""
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while (lines := data.count(b"\n")) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"child reported only {lines} events in {timeout} s"
            if selector.select(remaining):
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                assert chunk, f"child exited early: {proc.wait()} {proc.stderr.read() if proc.stderr else b''!r}"
                data += chunk
    return data


def test_kill_9_keeps_every_reported_event(tmp_path: Path) -> None:
    """Three writers in a row are SIGKILLed mid-stream; every event one reported appended must survive."""
    reported: list[tuple[int, int]] = []  # (seq, id) the children printed after append returned
    for round_no, kill_after in enumerate([1500, 2500, 800]):
        first_seq = round_no * 1_000_000
        with subprocess.Popen(
            [sys.executable, "-c", _child_code(tmp_path, first_seq)],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        ) as proc:
            data = _read_lines(proc, kill_after, timeout=60)
            proc.send_signal(signal.SIGKILL)
            assert proc.stdout is not None
            data += proc.stdout.read()  # lines still in the pipe were appended too
            assert proc.wait() == -signal.SIGKILL
        lines = data.split(b"\n")[:-1]  # the last element is empty or a line cut by the kill
        reported += [(int(seq), int(event_id)) for seq, event_id in (line.split() for line in lines)]
        assert len(lines) >= kill_after

        events = run(stored_events(tmp_path))
        seqs = [int(ev.topic.removeprefix("dev/")) for ev in events]
        for ev, seq in zip(events, seqs, strict=True):
            assert ev.payload == _payload(seq)
        assert [ev.id for ev in events] == sorted({ev.id for ev in events})
        assert seqs == sorted(seqs)
        this_round = [s for s in seqs if s >= first_seq]
        assert this_round == list(range(first_seq, first_seq + len(this_round)))  # no holes
        stored = {(seq, ev.id) for ev, seq in zip(events, seqs, strict=True)}
        assert set(reported) <= stored
        assert len(stored) - len(reported) <= round_no + 1  # at most one unreported append per kill


def test_torn_tail_is_discarded_and_the_rest_kept(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=16 * 1024) as spool:
            ids = [put(spool, f"dev/{seq}", _payload(seq)) for seq in range(40)]
        last = max(p for p in segment_files(tmp_path) if p.stat().st_size > 0)
        size = last.stat().st_size
        os.truncate(last, size - 3)
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=16 * 1024) as spool:
            events = all_events(spool)
            assert [ev.id for ev in events] == ids[:-1]
            assert all(ev.payload == _payload(seq) for seq, ev in enumerate(events))
            assert last.stat().st_size < size - 3  # the partial record was cut off the file
            new_id = spool.append("dev/after", b"after")
            assert [ev.id for ev in all_events(spool)] == [*ids[:-1], new_id]

    run(body())


def test_corrupt_record_cuts_its_segment_and_later_segments_survive(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            ids = [put(spool, f"dev/{seq}", _payload(seq)) for seq in range(40)]
        first = segment_files(tmp_path)[0]
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            in_first = [ev.id for ev in all_events(spool) if ev.id < int(segment_files(tmp_path)[1].stem)]
        assert len(in_first) >= 2
        data = bytearray(first.read_bytes())
        data[-10] ^= 0xFF  # inside the payload of the segment's last record
        first.write_bytes(data)
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            survivors = [ev.id for ev in all_events(spool)]
            assert survivors == [i for i in ids if i != in_first[-1]]
            assert spool.depth == len(survivors)
            for event_id in survivors:  # the head passes the gap
                spool.ack(event_id)
            assert spool.depth == 0 and spool.size_bytes == 0

    run(body())


def test_reject_new_policy_counts_and_refuses(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path / "n", max_bytes=MIB, max_events=3) as spool:
            ids = [put(spool, "t", b"x") for _ in range(3)]
            assert spool.append("t", b"x") is None
            assert spool.rejected == 1 and spool.depth == 3 and spool.dropped == 0
            spool.ack(ids[0])
            assert spool.append("t", b"y") is not None
            assert [ev.payload for ev in spool.peek(10)] == [b"x", b"x", b"y"]
        async with Spool(tmp_path / "b", max_bytes=3000) as spool:
            assert spool.append("t", b"x" * 1400) is not None
            assert spool.append("t", b"x" * 1400) is not None
            assert spool.append("t", b"x" * 1400) is None
            assert spool.rejected == 1 and spool.size_bytes <= 3000
            with pytest.raises(ValueError, match="never fit"):
                spool.append("t", b"x" * 3000)

    run(body())


def test_drop_oldest_policy_evicts_the_head_and_counts(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path / "n", max_bytes=MIB, max_events=3, policy=OverflowPolicy.DROP_OLDEST) as spool:
            ids = [put(spool, "t", bytes([i])) for i in range(5)]
            assert spool.dropped == 2 and spool.rejected == 0 and spool.depth == 3
            assert [ev.id for ev in spool.peek(10)] == ids[2:]
            spool.ack(ids[0])  # the ack of an in-flight event that was dropped meanwhile is ignored
            assert spool.acked == 0
            spool.ack(ids[3])  # acked out of order, then evicted: delivered, so not counted as dropped
            spool.append("t", b"5")
            spool.append("t", b"6")
            assert spool.dropped == 3
            assert [ev.payload for ev in spool.peek(10)] == [b"\x04", b"5", b"6"]
        async with Spool(tmp_path / "b", max_bytes=5000, policy=OverflowPolicy.DROP_OLDEST) as spool:
            for _ in range(10):
                assert spool.append("t", b"x" * 1000) is not None
                assert spool.size_bytes <= 5000
            assert spool.dropped == 6 and spool.depth == 4

    run(body())


def test_acked_segments_are_deleted_from_disk(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            ids = [put(spool, f"dev/{seq}", _payload(seq)) for seq in range(100)]
            files = segment_files(tmp_path)
            assert len(files) > 10
            for event_id in ids[:50]:
                spool.ack(event_id)
            remaining = segment_files(tmp_path)
            assert files[0] not in remaining and files[-1] in remaining
            for event_id in ids[50:]:
                spool.ack(event_id)
            assert segment_files(tmp_path) == [files[-1]]  # only the tail segment, kept for appending
            assert spool.depth == 0 and spool.size_bytes == 0
        async with Spool(tmp_path, max_bytes=64 * MIB, segment_bytes=8 * 1024) as spool:
            assert spool.depth == 0 and spool.peek(10) == []
            assert len(segment_files(tmp_path)) == 1  # the old tail (fully acked) gave way to a new one

    run(body())


def test_wait_for_events_wakes_on_append_and_on_close(tmp_path: Path) -> None:
    async def body() -> None:
        spool = Spool(tmp_path, max_bytes=MIB)
        await spool.open()
        first = put(spool, "t", b"1")
        await asyncio.wait_for(spool.wait_for_events(), 5)  # already non-empty
        waiter = asyncio.create_task(spool.wait_for_events(after=first))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not waiter.done()
        spool.append("t", b"2")
        await asyncio.wait_for(waiter, 5)
        closing = asyncio.create_task(spool.wait_for_events(after=first + 1))
        await asyncio.sleep(0)
        await spool.close()
        with pytest.raises(SpoolError, match="not open"):
            await asyncio.wait_for(closing, 5)

    run(body())


def test_fsync_policy_syncs_segments_off_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    threads: set[threading.Thread] = set()
    real_fsync = os.fsync

    async def body() -> None:
        loop = asyncio.get_running_loop()
        fsynced = asyncio.Event()

        def recording_fsync(fd: int) -> None:
            threads.add(threading.current_thread())
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
            real_fsync(fd)
            loop.call_soon_threadsafe(fsynced.set)

        monkeypatch.setattr(os, "fsync", recording_fsync)
        async with Spool(tmp_path, max_bytes=MIB, fsync_interval=0.01) as spool:
            spool.append("t", b"x")
            tail = str(segment_files(tmp_path)[-1])
            async with asyncio.timeout(10):  # the background task syncs the new segment and the directory
                while not (tail in synced and str(tmp_path) in synced):
                    await fsynced.wait()
                    fsynced.clear()
            synced.clear()
            spool.append("t", b"y")
            await spool.sync()
            assert tail in synced
        assert threading.main_thread() not in threads  # never on the event loop's thread

    run(body())


def test_a_spool_directory_is_used_by_one_owner_at_a_time(tmp_path: Path) -> None:
    async def body() -> None:
        async with Spool(tmp_path, max_bytes=MIB) as spool:
            with pytest.raises(SpoolError, match="in use"):
                await Spool(tmp_path, max_bytes=MIB).open()
            spool.append("t", b"x")
        with pytest.raises(SpoolError, match="not open"):
            spool.append("t", b"x")
        async with Spool(tmp_path, max_bytes=MIB) as spool:
            assert spool.depth == 1

    run(body())


def test_ids_keep_increasing_when_the_directory_is_wiped(tmp_path: Path) -> None:
    async def first_id(directory: Path) -> int:
        async with Spool(directory, max_bytes=MIB) as spool:
            return put(spool, "t", b"x")

    before = run(first_id(tmp_path / "a"))
    assert run(first_id(tmp_path / "b")) > before
