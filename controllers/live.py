"""The live event stream of a lot: occupancy changes, gate decisions and alerts, for the operators' dashboard.

Publishing: where a gate decision commits (controllers.gates) and where live occupancy counters change
(controllers.occupancy, the sensors' path), the process appends an event to the lot's Redis stream (XADD, trimmed
to `live_stream_maxlen`: a bounded log whose ids are the SSE ids). Occupancy and alerts are recomputed by the
process where the change happened, once per burst (`LivePublisher.changed` coalesces), and appended only when
they differ from what the stream last said (a fingerprint per lot in Redis, shared by every process).

Reading: one `LiveHub` per process runs one blocking XREAD per lot that has viewers and fans each event out to
the viewers' queues, so 200 browsers on one lot cost one Redis read per process, not 200, and no database query
per client. A viewer resuming from Last-Event-ID first gets the events after that id from the stream (XRANGE),
then the live ones, without a gap or a repeat (ids are compared); when the log no longer reaches back that far
(trimmed, or Redis restarted) it gets a `reset` event and reloads the dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from core.keys import Keys
from core.logging import get_logger

log = get_logger("parkgrid.live")

KINDS = ("occupancy", "gate", "alerts")
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
#: how long a process trusts its answer to "does anyone view this lot?"
WATCH_CACHE_SECONDS = 5.0


def stream_id(raw: str | bytes) -> tuple[int, int]:
    """A Redis stream id ("ms-seq") as a comparable pair; ValueError when malformed."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    if not ms.isdigit() or (seq and not seq.isdigit()):
        raise ValueError(f"not a stream id: {text!r}")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class LiveEvent:
    id: str  # the stream id, also the SSE id
    kind: str  # occupancy | gate | alerts | reset | ready
    data: bytes  # JSON

    @property
    def key(self) -> tuple[int, int]:
        return stream_id(self.id)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _event(entry_id: Any, fields: Any) -> LiveEvent:
    """A stream entry (the client answers bytes) as an event."""
    data = fields.get(b"data", b"{}")
    return LiveEvent(_text(entry_id), _text(fields.get(b"kind", b"")), data if isinstance(data, bytes) else
                     str(data).encode())


class LivePublisher:
    """Appends a lot's events to its stream; recomputes occupancy and alerts once per burst of changes."""

    def __init__(self, *, redis: aioredis.Redis, prefix: str, maxlen: int,
                 refresh: Callable[[uuid.UUID], Awaitable[None]] | None = None) -> None:
        self.redis = redis
        self.keys = Keys(prefix)
        self.maxlen = maxlen
        self.refresh = refresh
        self._running: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._dirty: set[uuid.UUID] = set()
        self._watched: dict[uuid.UUID, tuple[float, bool]] = {}  # lot -> (until, watched), per process

    async def watch(self, lot_id: uuid.UUID, *, seconds: int) -> None:
        """Someone (in any process) views the lot: keep its occupancy and alerts on the stream for `seconds`."""
        try:
            await self.redis.set(self.keys.live_watch(str(lot_id)), b"1", ex=seconds)
        except REDIS_ERRORS:
            return
        self._watched[lot_id] = (time.monotonic() + WATCH_CACHE_SECONDS, True)

    async def watched(self, lot_id: uuid.UUID) -> bool:
        """Whether anyone views the lot (asked of Redis at most every WATCH_CACHE_SECONDS per process): the
        sensors' write path recomputes nothing for lots nobody looks at."""
        now = time.monotonic()
        cached = self._watched.get(lot_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = bool(await self.redis.exists(self.keys.live_watch(str(lot_id))))
        except REDIS_ERRORS:
            found = False
        if len(self._watched) > 10_000:
            self._watched.clear()
        self._watched[lot_id] = (now + WATCH_CACHE_SECONDS, found)
        return found

    async def publish(self, lot_id: uuid.UUID, kind: str, data: dict[str, Any]) -> str | None:
        """Append one event; its stream id, or None when Redis is away (the dashboard's JSON still answers)."""
        try:
            entry = await self.redis.xadd(self.keys.live_stream(str(lot_id)),
                                          {"kind": kind, "data": orjson.dumps(data, option=orjson.OPT_UTC_Z)},
                                          maxlen=self.maxlen, approximate=True)
        except REDIS_ERRORS as exc:
            log.warning("live_publish_failed", lot_id=str(lot_id), kind=kind, error=type(exc).__name__)
            return None
        return _text(entry)

    async def publish_if_changed(self, lot_id: uuid.UUID, kind: str, data: dict[str, Any], fingerprint: str) -> bool:
        """Append `data` unless the stream's last `kind` event had the same fingerprint (in any process)."""
        state = self.keys.live_state(str(lot_id))
        try:
            previous = await self.redis.hget(state, kind)
            if previous is not None and _text(previous) == fingerprint:
                return False
            await self.redis.hset(state, kind, fingerprint)
            await self.redis.expire(state, 7 * 86_400)
        except REDIS_ERRORS as exc:
            log.warning("live_publish_failed", lot_id=str(lot_id), kind=kind, error=type(exc).__name__)
            return False
        return await self.publish(lot_id, kind, data) is not None

    async def last_id(self, lot_id: uuid.UUID) -> str | None:
        """The id of the lot's newest event (a viewer that loads the dashboard resumes from it), or None."""
        try:
            newest: Any = await self.redis.xrevrange(self.keys.live_stream(str(lot_id)), count=1)
        except REDIS_ERRORS:
            return None
        return _text(newest[0][0]) if newest else None

    def changed(self, lot_id: uuid.UUID) -> None:
        """Something moved in the lot: recompute its occupancy and alerts soon, once for a burst of changes."""
        if self.refresh is None:
            return
        cached = self._watched.get(lot_id)
        if cached is not None and not cached[1] and cached[0] > time.monotonic():
            return  # nobody views the lot (asked lately): the sensors' hot path pays a dict lookup, no task
        if lot_id in self._running:
            self._dirty.add(lot_id)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._running[lot_id] = loop.create_task(self._refresh_until_clean(lot_id))

    async def _refresh_until_clean(self, lot_id: uuid.UUID) -> None:
        assert self.refresh is not None
        try:
            if not await self.watched(lot_id):
                return
            while True:
                self._dirty.discard(lot_id)
                try:
                    await self.refresh(lot_id)
                except Exception as exc:  # a failed refresh must not break the write path that triggered it
                    log.warning("live_refresh_failed", lot_id=str(lot_id), error=repr(exc)[:300])
                if lot_id not in self._dirty:
                    return
        finally:
            self._running.pop(lot_id, None)

    async def drain(self) -> None:
        """Wait for the refreshes under way (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*list(self._running.values()), return_exceptions=True)


@dataclass
class _Reader:
    """One lot's XREAD loop in this process and the queues of its viewers."""

    queues: set[asyncio.Queue[LiveEvent | None]] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class LiveHub:
    """Fans a lot's stream out to this process's viewers: one blocking XREAD per lot with viewers."""

    def __init__(self, *, redis_url: str, prefix: str, publisher: LivePublisher, block_ms: int = 5000,
                 queue_size: int = 1000, every: float = 30.0, cluster: bool = False) -> None:
        # Blocking reads need a socket timeout longer than the block; the shared client gives up after 250 ms.
        # A lot's stream is one key, so on a Redis Cluster the cluster client sends its XREAD to that key's node.
        timeout = block_ms / 1000 + 5
        self.redis: aioredis.Redis = cast(aioredis.Redis, RedisCluster.from_url(
            redis_url, socket_timeout=timeout, socket_connect_timeout=5, decode_responses=False)) if cluster else \
            aioredis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=5,
                                    decode_responses=False)
        self.keys = Keys(prefix)
        self.block_ms = block_ms
        self.queue_size = queue_size
        self.every = every
        self.publisher = publisher
        self.readers: dict[uuid.UUID, _Reader] = {}

    async def _read(self, lot_id: uuid.UUID, reader: _Reader) -> None:
        key = self.keys.live_stream(str(lot_id))
        loop = asyncio.get_running_loop()
        last: Any = b"0-0"
        while self.readers.get(lot_id) is reader:
            try:
                newest: Any = await self.redis.xrevrange(key, count=1)
                last = newest[0][0] if newest else b"0-0"
                break
            except REDIS_ERRORS as exc:
                log.warning("live_read_failed", lot_id=str(lot_id), error=type(exc).__name__)
                await asyncio.sleep(1)
        reader.ready.set()
        next_tick = loop.time()
        # until the last viewer leaves (or the hub closes): a cancel that the cluster client swallows mid-XREAD
        # ends the loop here instead of leaving a reader that nobody awaits to the end
        while self.readers.get(lot_id) is reader:
            if loop.time() >= next_tick:  # viewers here: keep the lot watched, re-evaluate time-based alerts
                await self.publisher.watch(lot_id, seconds=int(self.every * 3) + 1)
                self.publisher.changed(lot_id)
                next_tick = loop.time() + self.every
            try:
                block = max(1, min(self.block_ms, int((next_tick - loop.time()) * 1000)))
                got: Any = await self.redis.xread({key: last}, count=500, block=block)
            except REDIS_ERRORS as exc:
                if self.readers.get(lot_id) is not reader:  # the last viewer left (a cancel can surface as this)
                    return
                log.warning("live_read_failed", lot_id=str(lot_id), error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for _, entries in got or []:
                for entry_id, fields in entries:
                    last = entry_id
                    event = _event(entry_id, fields)
                    for q in list(reader.queues):
                        try:
                            q.put_nowait(event)
                        except asyncio.QueueFull:  # a viewer too slow to keep up: it reconnects and resumes
                            reader.queues.discard(q)
                            with contextlib.suppress(asyncio.QueueFull):
                                q.get_nowait()
                                q.put_nowait(None)

    async def _join(self, lot_id: uuid.UUID) -> asyncio.Queue[LiveEvent | None]:
        reader = self.readers.get(lot_id)
        if reader is None:
            reader = self.readers[lot_id] = _Reader()
            reader.task = asyncio.get_running_loop().create_task(self._read(lot_id, reader))
        q: asyncio.Queue[LiveEvent | None] = asyncio.Queue(self.queue_size)
        reader.queues.add(q)
        await reader.ready.wait()
        return q

    def _leave(self, lot_id: uuid.UUID, q: asyncio.Queue[LiveEvent | None]) -> None:
        reader = self.readers.get(lot_id)
        if reader is None:
            return
        reader.queues.discard(q)
        if not reader.queues:
            self.readers.pop(lot_id, None)
            if reader.task is not None:
                reader.task.cancel()

    async def _backlog(self, lot_id: uuid.UUID, after: str) -> list[LiveEvent] | None:
        """The events after `after`, or None when the log no longer reaches back to it."""
        key = self.keys.live_stream(str(lot_id))
        try:
            info: Any = await self.redis.xinfo_stream(key)
        except RedisError:  # no such key: nothing was kept (never published, or Redis restarted)
            return None
        # `after` was an entry of this log: if the oldest entry kept is newer, `after` and maybe more were trimmed
        # (XTRIM does not record what it removed, so a gap cannot be ruled out: the viewer reloads)
        first = info.get("first-entry")
        newest = first[0] if first else info.get("last-generated-id")
        if newest is not None and stream_id(_text(newest)) > stream_id(after):
            return None
        entries: Any = await self.redis.xrange(key, min=f"({after}", max="+")
        return [_event(i, f) for i, f in entries]

    async def stream(self, lot_id: uuid.UUID, *, last_event_id: str | None) -> AsyncIterator[LiveEvent]:
        """The lot's events from after `last_event_id` (or from now), then live, until the viewer leaves or
        falls too far behind (the stream ends; EventSource reconnects with its Last-Event-ID)."""
        q = await self._join(lot_id)
        try:
            seen = (0, 0)
            if last_event_id:
                backlog = await self._backlog(lot_id, last_event_id)
                if backlog is None:
                    yield LiveEvent("", "reset", b'{"reason": "the live log no longer reaches back to that id"}')
                else:
                    seen = stream_id(last_event_id)
                    for event in backlog:
                        seen = event.key
                        yield event
            yield LiveEvent("", "ready", b"{}")
            while True:
                live = await q.get()
                if live is None:
                    return
                if live.key <= seen:
                    continue
                seen = live.key
                yield live
        finally:
            self._leave(lot_id, q)

    async def aclose(self) -> None:
        for lot_id in list(self.readers):
            reader = self.readers.pop(lot_id)
            if reader.task is not None:
                reader.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader.task
        await self.redis.aclose()


def _closers(ctx: Any) -> list[Callable[[], Awaitable[None]]]:
    found = ctx.extras.setdefault("closers", [])
    assert isinstance(found, list)
    return found


def live_publisher(ctx: Any) -> LivePublisher:
    """The process's publisher (one per AppContext); its refresh recomputes a lot's dashboard numbers."""
    found = ctx.extras.get("live_publisher")
    if found is None:
        from controllers.dashboard import refresh_lot  # dashboard reads gates and sessions, which publish here

        s = ctx.settings

        async def refresh(lot_id: uuid.UUID) -> None:
            await refresh_lot(ctx, lot_id=lot_id)

        found = ctx.extras["live_publisher"] = LivePublisher(redis=ctx.redis, prefix=s.redis_prefix,
                                                             maxlen=s.live_stream_maxlen, refresh=refresh)
        _closers(ctx).append(found.aclose)
    return found  # type: ignore[no-any-return]


def live_hub(ctx: Any) -> LiveHub:
    """The process's hub (one per AppContext, closed with it)."""
    found = ctx.extras.get("live_hub")
    if found is None:
        s = ctx.settings
        found = ctx.extras["live_hub"] = LiveHub(redis_url=s.redis_url, prefix=s.redis_prefix,
                                                 publisher=live_publisher(ctx), every=s.live_alert_interval_seconds,
                                                 cluster=s.redis_cluster)
        _closers(ctx).append(found.aclose)
    return found  # type: ignore[no-any-return]
