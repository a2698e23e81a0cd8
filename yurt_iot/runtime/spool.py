"""A bounded, disk-backed FIFO of events: the queue behind store-and-forward.

Pollers :meth:`Spool.append` events (an MQTT topic and a payload); a publisher :meth:`Spool.peek`\\ s
batches from the head, publishes them and :meth:`Spool.ack`\\ s each event once the broker acknowledged it.

On-disk format (one directory per spool)::

    <first id, 20 digits>.seg   segments, append-only, rolled over at ~segment_bytes
    checkpoint                  head id and ids acknowledged above it, replaced atomically
    lock                        flock'ed while open, so two processes never share a spool

    record   = length:u32 crc32:u32 id:u64 topic_len:u16 topic:bytes[topic_len] payload   (little-endian)
    length   = bytes after the crc field;  crc32 covers exactly those bytes
    checkpoint = magic "YSPOOL01" head:u64 count:u32 acked_id:u64[count] crc32:u32 (of all before it)

Within a segment, ids are consecutive from the id in its file name. Segments may have gaps between them
(after recovery from corruption, or because a reopened spool starts its ids at the wall clock, see below).

Guarantees, and why they hold:

* Survives ``kill -9``: ``append`` writes the whole record with one unbuffered ``writev`` before it
  returns, so an accepted event is in the OS page cache, which outlives the process. No fsync is needed
  for that. Power loss is another matter: with ``fsync_interval=None`` (the default) the events of the
  last few seconds may be lost; with ``fsync_interval=t`` a background task fsyncs dirty segments (and the
  directory) every ``t`` seconds in a worker thread, so at most ~``t`` seconds of events are lost.
  :meth:`Spool.sync` does the same on demand.
* Torn writes: recovery reads every record and stops a segment at the first record whose length, id or
  CRC32 is wrong; that tail is cut off (logged as a warning), everything before it is kept.
* Strict FIFO: ids increase in append order and ``peek`` returns events in id order.
* Bounded: ``max_bytes`` (record bytes) and ``max_events`` count every event the head has not passed yet,
  including events acknowledged out of order. At the bound, ``OverflowPolicy.REJECT_NEW`` makes ``append``
  return ``None`` (counted in ``rejected``) and ``OverflowPolicy.DROP_OLDEST`` evicts from the head
  (counted in ``dropped``, even if an evicted event is in flight). Disk use can exceed ``max_bytes`` by
  up to one segment: the acknowledged prefix of the head segment is freed only when the whole segment is.
* At-least-once: the head advances only over a contiguous prefix of acknowledged ids; acks above a
  gap are remembered. The head and those acks (up to 4096 of them) are checkpointed at most every 0.25 s
  and at close, so a clean reopen holds exactly the unacknowledged events, and after a crash every
  unacknowledged event is delivered again, and so may be events acknowledged shortly before it (or whose
  ack the publisher never recorded). Consumers must therefore deduplicate by event id. Ids are never
  reused: a reopened spool continues at ``max(last id + 1, wall clock in microseconds)``, which also keeps
  ids increasing across a wiped directory or a tail lost to power loss, as long as the clock does not go
  backwards and the average rate stays below a million events per second.
* Reclaimed: a segment file is deleted once the head has passed all of its events.

Not thread-safe: use one spool from one event loop thread. Counters count since :meth:`Spool.open`.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import fcntl
import logging
import os
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

__all__ = ["OverflowPolicy", "Spool", "SpoolError", "SpooledEvent"]

logger = logging.getLogger(__name__)

_RECORD = struct.Struct("<IIQH")  # length, crc32, id, topic_len
_LENGTH_CRC = struct.Struct("<II")
_ID_TOPIC = struct.Struct("<QH")
_PREFIX = _LENGTH_CRC.size  # bytes before the CRC-covered part
_MIN_LENGTH = _ID_TOPIC.size
_CHECKPOINT_HEAD = struct.Struct("<8sQI")  # magic, head, count of acked ids that follow
_CHECKPOINT_MAGIC = b"YSPOOL01"
_CHECKPOINT_MAX_ACKED = 4096  # beyond that only the head is saved: a bounded write, more redelivery
_CHECKPOINT_INTERVAL_S = 0.25
_SEGMENT_SUFFIX = ".seg"
_MAX_TOPIC_BYTES = 0xFFFF


class OverflowPolicy(enum.StrEnum):
    """What ``append`` does when the spool is at its bound."""

    REJECT_NEW = "reject_new"
    DROP_OLDEST = "drop_oldest"


class SpooledEvent(NamedTuple):
    """An event read back from the spool. `id` is unique and increasing: consumers deduplicate by it."""

    id: int
    topic: str
    payload: bytes


class SpoolError(Exception):
    """The spool is not open, is locked by another process, or a record read back is corrupt."""


class _Segment:
    __slots__ = ("dirty", "first", "offsets", "path", "size")

    def __init__(self, first: int, path: Path, offsets: array[int] | None = None, size: int = 0) -> None:
        self.first = first
        self.path = path
        self.offsets: array[int] = array("Q") if offsets is None else offsets  # record start per event
        self.size = size
        self.dirty = False  # written since the last fsync

    @property
    def end(self) -> int:
        """One past the last id in this segment."""
        return self.first + len(self.offsets)

    def offset(self, event_id: int) -> int:
        """Byte offset of `event_id`'s record, or the segment size for `end`."""
        i = event_id - self.first
        return self.offsets[i] if i < len(self.offsets) else self.size


def _segment_path(directory: Path, first: int) -> Path:
    return directory / f"{first:020d}{_SEGMENT_SUFFIX}"


def _scan_segment(path: Path, first: int) -> _Segment:
    """Index a segment's records, cutting the file at the first invalid (torn or corrupt) one."""
    data = path.read_bytes()
    view = memoryview(data)
    offsets: array[int] = array("Q")
    pos, expected, n = 0, first, len(data)
    while pos + _RECORD.size <= n:
        length, crc, event_id, topic_len = _RECORD.unpack_from(data, pos)
        end = pos + _PREFIX + length
        if (
            length < _MIN_LENGTH
            or end > n
            or event_id != expected
            or topic_len > length - _MIN_LENGTH
            or zlib.crc32(view[pos + _PREFIX : end]) != crc
        ):
            break
        offsets.append(pos)
        pos, expected = end, expected + 1
    if pos < n:
        logger.warning("spool: discarding %d bytes of torn or corrupt records at the end of %s", n - pos, path)
        os.truncate(path, pos)
    return _Segment(first, path, offsets, pos)


class _Checkpoint(NamedTuple):
    head: int
    acked_ids: array[int]


def _read_checkpoint(path: Path) -> _Checkpoint | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if len(data) >= _CHECKPOINT_HEAD.size + 4:
        magic, head, count = _CHECKPOINT_HEAD.unpack_from(data)
        crc_at = _CHECKPOINT_HEAD.size + 8 * count
        if (
            magic == _CHECKPOINT_MAGIC
            and len(data) == crc_at + 4
            and zlib.crc32(data[:crc_at]) == int.from_bytes(data[crc_at:], "little")
        ):
            acked_ids: array[int] = array("Q")
            acked_ids.frombytes(data[_CHECKPOINT_HEAD.size : crc_at])
            return _Checkpoint(head, acked_ids)
    logger.warning("spool: ignoring invalid checkpoint %s (acknowledged events will be delivered again)", path)
    return None


def _recover(directory: Path) -> tuple[list[_Segment], _Checkpoint | None]:
    """Scan the segments in id order; return the non-empty ones not wholly before the checkpoint."""
    checkpoint = _read_checkpoint(directory / "checkpoint")
    head = checkpoint.head if checkpoint is not None else None
    found = sorted(
        (int(p.stem), p) for p in directory.glob(f"*{_SEGMENT_SUFFIX}") if p.stem.isdigit() and len(p.stem) == 20
    )
    segments: list[_Segment] = []
    for i, (first, path) in enumerate(found):
        later_first = found[i + 1][0] if i + 1 < len(found) else None
        if head is not None and later_first is not None and later_first <= head:
            path.unlink()  # every event in it is acknowledged; no need to read it
            continue
        segment = _scan_segment(path, first)
        if segment.offsets or later_first is None:
            segments.append(segment)
        else:
            path.unlink()
    return segments, checkpoint


def _fsync_paths(paths: list[Path], directory: Path | None) -> None:
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # deleted meanwhile: fully acknowledged
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    if directory is not None:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Spool:
    """A bounded, disk-backed FIFO of ``(topic, payload)`` events with per-event acknowledgement.

    Use as ``async with Spool(...) as spool:`` (or ``await open()`` / ``await close()``). ``append``,
    ``peek`` and ``ack`` are synchronous and quick: one ``writev``/``pread`` syscall each at most, plus an
    ``open``/``unlink`` per segment and a small checkpoint write at most every 0.25 s.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_events: int | None = None,
        policy: OverflowPolicy = OverflowPolicy.REJECT_NEW,
        segment_bytes: int = 4 * 1024 * 1024,
        fsync_interval: float | None = None,
    ) -> None:
        if max_bytes <= 0 or (max_events is not None and max_events <= 0) or segment_bytes <= 0:
            raise ValueError("max_bytes, max_events and segment_bytes must be positive")
        if fsync_interval is not None and fsync_interval <= 0:
            raise ValueError("fsync_interval must be positive or None")
        self._directory = directory
        self._max_bytes = max_bytes
        self._max_events = max_events if max_events is not None else 2**63
        self._policy = policy
        self._segment_bytes = segment_bytes
        self._fsync_interval = fsync_interval

        self._fd = -1  # the tail segment, O_APPEND; -1 while closed
        self._lock_fd = -1
        self._reader: tuple[_Segment, int] | None = None  # cached read fd of one non-tail segment
        self._segments: list[_Segment] = []  # segments[0] holds the head; segments[-1] is the tail
        self._head = 0  # oldest id not yet passed; == _next_id when nothing is held
        self._next_id = 0
        self._held = 0  # events from the head on, including ones acknowledged out of order
        self._held_bytes = 0
        self._acked_ids: set[int] = set()  # acknowledged ids above the head
        self._checkpoint_time = 0.0
        self._dir_dirty = False
        self._wakeup: asyncio.Event | None = None
        self.on_append: Callable[[SpooledEvent], bool] | None = None
        """Called with each event as soon as it is stored. The spool's one consumer may take the event right
        there (the publisher does when it has caught up: the event is at hand, no need to read it back) and
        return True; then :meth:`wait_for_events` is not woken for it."""
        self._sync_task: asyncio.Task[None] | None = None
        self._appended = self._acked = self._rejected = self._dropped = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Lock the directory, recover its segments (in a worker thread) and start accepting events."""
        if self._fd >= 0:
            raise SpoolError("spool is already open")
        self._directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self._directory / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SpoolError(f"spool {self._directory} is in use by another process") from None
        try:
            segments, checkpoint = await asyncio.to_thread(_recover, self._directory)
            self._start(segments, checkpoint)
        except BaseException:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(lock_fd)
            raise
        self._lock_fd = lock_fd
        self._appended = self._acked = self._rejected = self._dropped = 0
        if self._fsync_interval is not None:
            self._sync_task = asyncio.create_task(self._sync_loop(self._fsync_interval))

    def _start(self, segments: list[_Segment], checkpoint: _Checkpoint | None) -> None:
        saved_head = checkpoint.head if checkpoint is not None else 0
        last_end = segments[-1].end if segments else 0
        self._next_id = max(last_end, saved_head, time.time_ns() // 1000)
        if segments and last_end == self._next_id:
            tail = segments[-1]
        else:
            tail = _Segment(self._next_id, _segment_path(self._directory, self._next_id))
            segments.append(tail)
            self._dir_dirty = True
        self._fd = os.open(tail.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        self._segments = segments
        head = max(saved_head, segments[0].first)
        while len(segments) > 1 and head >= segments[0].end:
            segments.pop(0).path.unlink()
            head = max(head, segments[0].first)
        self._head = max(head, segments[0].first)
        self._held = sum(s.end - max(s.first, self._head) for s in segments)
        self._held_bytes = sum(s.size - s.offset(max(s.first, self._head)) for s in segments)
        self._acked_ids = {
            i
            for i in (checkpoint.acked_ids if checkpoint is not None else ())
            if i >= self._head and any(s.first <= i < s.end for s in segments)
        }
        self._advance_over_acked()
        self._checkpoint_time = time.monotonic()

    async def close(self) -> None:
        """Checkpoint the head, fsync if a policy is set, and release the directory. Idempotent."""
        if self._fd < 0:
            return
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
            self._sync_task = None
        fd, self._fd = self._fd, -1  # closed from here on: no appends while the final fsync runs
        try:
            self._write_checkpoint()
            if self._fsync_interval is not None:
                await self._sync()
        finally:
            os.close(fd)
            if self._reader is not None:
                os.close(self._reader[1])
                self._reader = None
            os.close(self._lock_fd)
            self._lock_fd = -1
            self._wake()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._fd < 0:
            raise SpoolError("spool is not open")

    # -- producer ----------------------------------------------------------------------------------

    def append(self, topic: str, payload: bytes) -> int | None:
        """Store an event; return its id, or ``None`` if the spool is full under ``REJECT_NEW``.

        When this returns an id, the event survives a crash of the process. Raises ``ValueError`` for an
        event that could never fit (larger than ``max_bytes``, or a topic over 65535 bytes of UTF-8).
        """
        fd = self._fd
        if fd < 0:
            raise SpoolError("spool is not open")
        topic_bytes = topic.encode()
        size = _RECORD.size + len(topic_bytes) + len(payload)
        over = self._held >= self._max_events or self._held_bytes + size > self._max_bytes
        if (over or len(topic_bytes) > _MAX_TOPIC_BYTES) and not self._make_room(size, len(topic_bytes)):
            return None
        event_id = self._next_id
        tail = self._segments[-1]
        if tail.offsets and tail.size + size > self._segment_bytes:
            tail = self._roll(event_id)
            fd = self._fd
        id_topic = _ID_TOPIC.pack(event_id, len(topic_bytes))
        crc = zlib.crc32(payload, zlib.crc32(topic_bytes, zlib.crc32(id_topic)))
        written = os.writev(fd, (_LENGTH_CRC.pack(size - _PREFIX, crc), id_topic, topic_bytes, payload))
        if written != size:  # short write (disk full): cut the partial record so the file stays valid
            os.ftruncate(fd, tail.size)
            raise OSError(f"short write to {tail.path}: {written} of {size} bytes")
        tail.offsets.append(tail.size)
        tail.size += size
        tail.dirty = True
        self._next_id = event_id + 1
        self._held += 1
        self._held_bytes += size
        self._appended += 1
        listener = self.on_append
        if listener is not None and listener(SpooledEvent(event_id, topic, payload)):
            return event_id
        if self._wakeup is not None:
            self._wake()
        return event_id

    def _make_room(self, size: int, topic_len: int) -> bool:
        if topic_len > _MAX_TOPIC_BYTES:
            raise ValueError(f"topic is {topic_len} bytes of UTF-8; at most {_MAX_TOPIC_BYTES} fit")
        if size > self._max_bytes:
            raise ValueError(f"event of {size} bytes can never fit in max_bytes={self._max_bytes}")
        if self._policy is OverflowPolicy.REJECT_NEW:
            self._rejected += 1
            return False
        acked_ids = self._acked_ids
        while self._held and (self._held >= self._max_events or self._held_bytes + size > self._max_bytes):
            if self._head in acked_ids:  # delivered already: evicting it loses nothing
                acked_ids.remove(self._head)
            else:
                self._dropped += 1
            self._pop_head()
        self._advance_over_acked()
        self._maybe_checkpoint()
        return True

    def _roll(self, first: int) -> _Segment:
        """Start a new tail segment whose first id is `first`."""
        old = self._segments[-1]
        segment = _Segment(first, _segment_path(self._directory, first))
        fd = os.open(segment.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
        os.close(self._fd)
        self._fd = fd
        self._segments.append(segment)
        self._dir_dirty = True
        if self._head == old.end:  # everything in the old tail was already passed
            self._retire_head_segment()
        return segment

    # -- consumer ----------------------------------------------------------------------------------

    def peek(self, max_events: int, after: int | None = None) -> list[SpooledEvent]:
        """Return up to `max_events` unacknowledged events in FIFO order, without removing them.

        With ``after=None`` they start at the head (e.g. to resend everything after a reconnect); with
        ``after=last_id_handed_out`` they continue past it, so a publisher can keep a window in flight.
        Events acknowledged out of order are skipped.
        """
        self._check_open()
        start = self._head if after is None or after < self._head else after + 1
        out: list[SpooledEvent] = []
        segments = self._segments
        if start >= self._next_id or max_events <= 0:
            return out
        if start >= segments[-1].first:
            i = len(segments) - 1
        else:
            i = max(bisect.bisect_right(segments, start, key=lambda s: s.first) - 1, 0)
        while i < len(segments) and len(out) < max_events:
            segment = segments[i]
            start = max(start, segment.first)
            count = min(segment.end - start, max_events - len(out))
            if count > 0:
                self._read(segment, start, count, out)
                start += count
            if start >= segment.end:
                i += 1
        return out

    def _read(self, segment: _Segment, start: int, count: int, out: list[SpooledEvent]) -> None:
        lo, hi = segment.offset(start), segment.offset(start + count)
        buf = os.pread(self._read_fd(segment), hi - lo, lo)
        if len(buf) != hi - lo:
            raise SpoolError(f"{segment.path} is shorter than expected: was it modified while open?")
        view = memoryview(buf)
        acked_ids = self._acked_ids
        pos = 0
        for event_id in range(start, start + count):
            length, crc, record_id, topic_len = _RECORD.unpack_from(buf, pos)
            end = pos + _PREFIX + length
            if record_id != event_id or zlib.crc32(view[pos + _PREFIX : end]) != crc:
                raise SpoolError(f"corrupt record for event {event_id} in {segment.path}")
            if event_id not in acked_ids:
                topic_end = pos + _RECORD.size + topic_len
                out.append(SpooledEvent(event_id, buf[pos + _RECORD.size : topic_end].decode(), buf[topic_end:end]))
            pos = end

    def _read_fd(self, segment: _Segment) -> int:
        if segment is self._segments[-1]:
            return self._fd
        if self._reader is not None:
            if self._reader[0] is segment:
                return self._reader[1]
            os.close(self._reader[1])
            self._reader = None
        fd = os.open(segment.path, os.O_RDONLY | os.O_CLOEXEC)
        self._reader = (segment, fd)
        return fd

    def ack(self, event_id: int) -> None:
        """Record that the broker acknowledged `event_id`; the head advances over the acknowledged prefix.

        Acks for ids already passed (duplicates, or events dropped under ``DROP_OLDEST``) are ignored.
        """
        self._check_open()
        if event_id >= self._next_id:
            raise ValueError(f"event {event_id} was never appended")
        if event_id < self._head or event_id in self._acked_ids:
            return
        self._acked += 1
        if event_id != self._head:
            self._acked_ids.add(event_id)
            return
        self._pop_head()
        if self._acked_ids:
            self._advance_over_acked()
        self._maybe_checkpoint()

    async def wait_for_events(self, after: int | None = None) -> None:
        """Return once an event newer than `after` is held (with ``None``: any unacknowledged event).

        Woken by ``append``, so a publisher needs no polling. Raises :class:`SpoolError` if the spool is
        closed meanwhile.
        """
        while True:
            self._check_open()
            if after is None:
                if self._held > len(self._acked_ids):
                    return
            elif self._held and self._next_id - 1 > after:
                return
            if self._wakeup is None:
                self._wakeup = asyncio.Event()
            await self._wakeup.wait()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    # -- head movement -----------------------------------------------------------------------------

    def _pop_head(self) -> None:
        segment = self._segments[0]
        head = self._head
        self._held_bytes -= segment.offset(head + 1) - segment.offset(head)
        self._held -= 1
        self._head = head + 1
        if self._head == segment.end and len(self._segments) > 1:
            self._retire_head_segment()

    def _advance_over_acked(self) -> None:
        acked_ids = self._acked_ids
        while self._head in acked_ids:
            acked_ids.remove(self._head)
            self._pop_head()

    def _retire_head_segment(self) -> None:
        """Delete the head segment, all of whose events the head has passed."""
        segment = self._segments.pop(0)
        if self._reader is not None and self._reader[0] is segment:
            os.close(self._reader[1])
            self._reader = None
        segment.path.unlink(missing_ok=True)
        self._dir_dirty = True
        self._head = self._segments[0].first  # skips a gap between segments, if any
        if self._acked_ids:  # acks for ids in a gap would otherwise linger
            self._acked_ids = {i for i in self._acked_ids if i >= self._head}

    def _maybe_checkpoint(self) -> None:
        if time.monotonic() - self._checkpoint_time >= _CHECKPOINT_INTERVAL_S:
            self._write_checkpoint()

    def _write_checkpoint(self) -> None:
        # No fsync: a checkpoint lost or torn by power loss is ignored at recovery (events are redelivered).
        acked_ids = array("Q", self._acked_ids if len(self._acked_ids) <= _CHECKPOINT_MAX_ACKED else ())
        body = _CHECKPOINT_HEAD.pack(_CHECKPOINT_MAGIC, self._head, len(acked_ids)) + acked_ids.tobytes()
        tmp = self._directory / "checkpoint.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, body + zlib.crc32(body).to_bytes(4, "little"))
        finally:
            os.close(fd)
        os.replace(tmp, self._directory / "checkpoint")
        self._checkpoint_time = time.monotonic()

    # -- durability against power loss ---------------------------------------------------------------

    async def sync(self) -> None:
        """Fsync every segment written since the last sync, and the directory, in a worker thread."""
        self._check_open()
        await self._sync()

    async def _sync(self) -> None:
        dirty = [s for s in self._segments if s.dirty]
        dir_dirty = self._dir_dirty
        if not dirty and not dir_dirty:
            return
        for segment in dirty:
            segment.dirty = False
        self._dir_dirty = False
        try:
            await asyncio.to_thread(_fsync_paths, [s.path for s in dirty], self._directory if dir_dirty else None)
        except BaseException:
            for segment in dirty:
                segment.dirty = True
            self._dir_dirty = self._dir_dirty or dir_dirty
            raise

    async def _sync_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self._sync()
            except OSError:
                logger.exception("spool: fsync of %s failed; will retry", self._directory)

    # -- state -------------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Events appended and not yet acknowledged (nor dropped)."""
        return self._held - len(self._acked_ids)

    @property
    def size_bytes(self) -> int:
        """Record bytes held, the quantity bounded by ``max_bytes``."""
        return self._held_bytes

    @property
    def appended(self) -> int:
        return self._appended

    @property
    def acked(self) -> int:
        """Acks recorded (duplicates and acks for dropped events are not counted)."""
        return self._acked

    @property
    def rejected(self) -> int:
        """Appends refused because the spool was full (``REJECT_NEW``)."""
        return self._rejected

    @property
    def dropped(self) -> int:
        """Unacknowledged events evicted to make room (``DROP_OLDEST``)."""
        return self._dropped
