"""The edge agent: forwards gate events to the cloud, decides locally when it can't, syncs the outbox.

Every event is committed to the local outbox before the gate gets an answer. While the cloud
answers within `timeout` and nothing older waits in the outbox, the cloud decides; otherwise the
agent decides locally and the sync loop replays the outbox to the cloud in sequence order. The
cloud deduplicates by event_id, so a replay after a crash (kill -9 between the cloud's answer and
the local commit) applies nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from controllers.edge.decide import decide_locally
from controllers.edge.store import EdgeStore, OutboxRow
from core.clock import Clock

log = logging.getLogger(__name__)

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class CloudUnavailable(Exception):
    pass


@dataclass
class EdgeConfig:
    lot_id: str
    device_key: str
    cloud_url: str
    timeout: float = 1.0
    snapshot_every: float = 30.0
    sync_every: float = 0.5


class EdgeAgent:
    def __init__(self, *, config: EdgeConfig, store: EdgeStore, clock: Clock,
                 http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.http = http or httpx.AsyncClient(base_url=config.cloud_url.rstrip("/"), timeout=config.timeout,
                                              headers={"X-Device-Key": config.device_key})
        self.online = False
        self.sending = asyncio.Lock()  # one sender at a time keeps the cloud's view in sequence order
        self.meta: dict[str, Any] = {}
        self.synced_events = 0

    async def start(self) -> None:
        self.meta = await self.store.meta()
        try:
            await self.refresh_snapshot()
        except CloudUnavailable:
            log.warning("cloud unreachable at start; deciding locally from the last copy")

    async def aclose(self) -> None:
        await self.http.aclose()

    # --- cloud calls --------------------------------------------------------------------
    async def _post_event(self, gate_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        try:
            r = await self.http.post(f"/api/v1/gates/{gate_id}/events", json=body)
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            self.online = False
            raise CloudUnavailable(str(exc)) from exc
        if r.status_code in RETRYABLE:
            self.online = False
            raise CloudUnavailable(f"cloud answered {r.status_code}")
        try:
            payload = r.json()
        except ValueError:
            payload = {"raw": r.text[:500]}
        return r.status_code, payload

    async def refresh_snapshot(self) -> None:
        """Copy the lot's reservations, passes, gates and occupancy from the cloud."""
        try:
            r = await self.http.get(f"/api/v1/lots/{self.config.lot_id}/edge-snapshot")
        except (httpx.TransportError, httpx.TimeoutException) as exc:
            self.online = False
            raise CloudUnavailable(str(exc)) from exc
        if r.status_code != 200:
            raise CloudUnavailable(f"snapshot answered {r.status_code}")
        await self.store.replace_snapshot(r.json())
        self.meta = await self.store.meta()

    # --- gate events ----------------------------------------------------------------------
    def gate_direction(self, gate_id: str) -> str | None:
        for g in self.meta.get("gates") or []:
            if g.get("id") == gate_id:
                return str(g.get("direction"))
        return None

    def knows_gate(self, gate_id: str) -> bool:
        return not self.meta.get("gates") or self.gate_direction(gate_id) is not None

    async def handle_gate_event(self, *, gate_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one gate: the first decision for a repeated event_id, the cloud's when it answers, else local."""
        event_id = str(body["event_id"])
        known = await self.store.find(event_id)
        if known is not None and known.decision is not None:
            return known.decision
        now = self.clock.now()
        direction = self.gate_direction(gate_id)
        if self.online and not self.sending.locked():
            async with self.sending:
                row = known or await self.store.append(event_id=event_id, gate_id=gate_id, body=body,
                                                       direction=direction, now=now)
                earlier = await self.store.pending(limit=1)
                if earlier and earlier[0].seq == row.seq:  # nothing older waits: the cloud decides now
                    try:
                        status, payload = await self._post_event(gate_id, body)
                        if status == 200 and isinstance(payload, dict) and "decision" in payload:
                            await self.store.set_decision(event_id=event_id, decision=payload, decided_by="cloud")
                        await self.store.mark_synced(seq=row.seq, status=status, cloud_decision=payload, now=now)
                        if status == 200:
                            self.synced_events += 1
                            return payload  # type: ignore[no-any-return]
                    except CloudUnavailable:
                        log.info("cloud unavailable; deciding %s locally", event_id)
            local = await decide_locally(store=self.store, meta=self.meta, direction=direction, event=body, now=now)
            await self.store.set_decision(event_id=event_id, decision=local, decided_by="local")
            found = await self.store.find(event_id)
            return found.decision if found and found.decision else local
        local = await decide_locally(store=self.store, meta=self.meta, direction=direction, event=body, now=now)
        row = await self.store.append(event_id=event_id, gate_id=gate_id, body=body, direction=direction, now=now,
                                      decision=local, decided_by="local")
        if row.decision is None:  # appended earlier without a decision (crash before deciding)
            await self.store.set_decision(event_id=event_id, decision=local, decided_by="local")
            return local
        return row.decision

    # --- sync -------------------------------------------------------------------------------
    async def sync_once(self, *, batch: int = 200) -> int:
        """Replay pending outbox rows to the cloud in sequence order; stops at the first failure."""
        done = 0
        async with self.sending:
            while True:
                rows = await self.store.pending(limit=batch)
                if not rows:
                    self.online = True
                    return done
                for row in rows:
                    await self._sync_row(row)
                    done += 1

    async def _sync_row(self, row: OutboxRow) -> None:
        status, payload = await self._post_event(row.gate_id, row.body)  # raises CloudUnavailable
        if status != 200:
            log.error("cloud refused event %s with %s; kept as dead letter", row.event_id, status)
        await self.store.mark_synced(seq=row.seq, status=status, cloud_decision=payload, now=self.clock.now())
        self.synced_events += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Background loop: sync the outbox and refresh the copy of the lot while the cloud answers."""
        loop = asyncio.get_running_loop()
        next_snapshot = 0.0
        while not stop.is_set():
            try:
                await self.sync_once()
                if loop.time() >= next_snapshot:
                    await self.refresh_snapshot()
                    next_snapshot = loop.time() + self.config.snapshot_every
            except CloudUnavailable as exc:
                log.debug("cloud unavailable: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.config.sync_every)

    async def status(self) -> dict[str, Any]:
        return {"online": self.online, "snapshot_at": self.meta.get("generated_at"), **await self.store.counts()}
