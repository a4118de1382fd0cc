"""Every Redis key ParkGrid uses is built here, so prefixes and hash tags have one home.

All keys of one lot share the hash tag ``{lot:<lot_id>}``: a Lua script only ever touches
one lot, so it runs on one shard of a Redis Cluster. The global prefix (settings.redis_prefix)
lets several environments, or several test runs, share one Redis.
"""

from __future__ import annotations

from datetime import date

# Key kinds (the segment after the hash tag). Kept short: they are repeated in every key.
BITMAP = "bm"  # per lot and day: bit spot_idx*96+slot is set when the spot is taken
BOOKED = "bk"  # per lot and day: BITFIELD u16 counters at #(type_index*96+slot)
HOLD = "h"  # per lot and hold id: what a hold set, so releasing it is exact and idempotent
CANDIDATES = "c"  # per lot and vehicle type: packed candidate spots in allocation order
SPOT_TYPES = "st"  # per lot: one byte per spot, the spot's type index
META = "m"  # per lot: hash with capacities, strategy, compatibility, spot count
DRIFT = "dr"  # per lot: counter of clamped counter updates (a sign Redis drifted)
DYNAMIC = "dm"  # per lot: the dynamic price multiplier last shown (hysteresis state)
SCRATCH = "tmp"  # per lot: scratch key used by rebuild, deleted by the same script
LOCAL_PAY_AUTH = "lpa"  # global per intent: the local payment provider's customer finished 3-D Secure
EPOCH = "epoch"  # global: missing means Redis lost its state and must be rebuilt
REVOCATIONS = "revocations"  # global: a counter bumped after each revocation commits (core.keyring)


class Keys:
    """Builds every Redis key from one prefix; the only place key layouts are spelled out."""

    def __init__(self, prefix: str) -> None:
        if not prefix or any(c in prefix for c in "{}: "):
            raise ValueError("redis prefix must be non-empty and contain no braces, colons or spaces")
        self.prefix = prefix

    def charger_revocations(self) -> str:
        """Pub/sub channel: the charge point ids revoked, so every process closes their open OCPP connections."""
        return f"{self.prefix}:ocpp:revoked"

    def reconcile_stats(self) -> str:
        """Hash of reconcile totals shared by every process (exported by /metrics)."""
        return f"{self.prefix}:stats:reconcile"

    def lot_tag(self, lot_id: str) -> str:
        """The hash-tagged stem shared by every key of one lot."""
        return f"{self.prefix}:{{lot:{lot_id}}}"

    def bitmap(self, lot_id: str, day: date) -> str:
        """Slot bitmap of all spots of a lot for one UTC day."""
        return f"{self.lot_tag(lot_id)}:{BITMAP}:{day:%Y%m%d}"

    def booked_counters(self, lot_id: str, day: date) -> str:
        """Booked-slot counters per spot type for one UTC day."""
        return f"{self.lot_tag(lot_id)}:{BOOKED}:{day:%Y%m%d}"

    def hold(self, lot_id: str, hold_id: str) -> str:
        """Record of one hold (spot and slot ranges it set)."""
        return f"{self.lot_tag(lot_id)}:{HOLD}:{hold_id}"

    def candidates(self, lot_id: str, vehicle_type: str) -> str:
        """Candidate spots for a vehicle type, in allocation order."""
        return f"{self.lot_tag(lot_id)}:{CANDIDATES}:{vehicle_type}"

    def spot_types(self, lot_id: str) -> str:
        """One byte per spot: its type index."""
        return f"{self.lot_tag(lot_id)}:{SPOT_TYPES}"

    def meta(self, lot_id: str) -> str:
        """Hash of lot-level slot metadata (capacities, strategy, compatibility)."""
        return f"{self.lot_tag(lot_id)}:{META}"

    def drift(self, lot_id: str) -> str:
        """Counter of clamped counter updates for a lot."""
        return f"{self.lot_tag(lot_id)}:{DRIFT}"

    def dynamic_multiplier(self, lot_id: str) -> str:
        """The lot's last dynamic price multiplier, so prices don't flap (pricing.service)."""
        return f"{self.lot_tag(lot_id)}:{DYNAMIC}"

    def scratch(self, lot_id: str) -> str:
        """Scratch key for rebuild scripts."""
        return f"{self.lot_tag(lot_id)}:{SCRATCH}"

    def live_stream(self, lot_id: str) -> str:
        """A lot's live event log (a Redis stream, trimmed to a bounded length): occupancy, gates, alerts.
        Outside the lot's slot keys, so forgetting a lot's slot state keeps its viewers' history."""
        return f"{self.prefix}:live:{{lot:{lot_id}}}"

    def live_state(self, lot_id: str) -> str:
        """Hash of what the live stream last said about a lot (fingerprints) and since when it is nearly full."""
        return f"{self.prefix}:livestate:{{lot:{lot_id}}}"

    def live_watch(self, lot_id: str) -> str:
        """Present (with a short expiry) while someone views the lot's live stream."""
        return f"{self.prefix}:livewatch:{{lot:{lot_id}}}"
    def revocations(self) -> str:
        """Global revocation version: every worker forgets the keys it remembers when it moves (core.keyring)."""
        return f"{self.prefix}:{REVOCATIONS}"

    def epoch(self) -> str:
        """Global epoch marker; its absence means Redis restarted empty."""
        return f"{self.prefix}:{EPOCH}"

    def local_payment_auth(self, intent_id: str) -> str:
        """Set when a local-provider intent's customer completed 3-D Secure (booking.payments.LocalProvider)."""
        return f"{self.prefix}:{LOCAL_PAY_AUTH}:{intent_id}"

    def lot_pattern(self, lot_id: str) -> str:
        """SCAN MATCH pattern for all keys of one lot (braces escaped for glob)."""
        return f"{self.prefix}:\\{{lot:{lot_id}\\}}:*"
