"""Labelers shared fairly between sources (``aggregator.labeler_slots``).

Without it every frame that needs a label gets a request at once, and each labeler serves its
requests first in, first out: a source that bursts fills the labelers' queues, and every other
source's frames wait behind its requests. With ``labeler_slots = n`` a labeler holds at most
``n`` outstanding requests (its ``load``), so requests wait in Redis instead of in the queues,
and the free slots of a step go to the sources in turn, the source with the fewest
outstanding requests first. No source holds more than its share: the slots of the available
labelers divided by the active sources (those with outstanding requests, or with frames that
wanted one in the last :data:`ACTIVE_SECONDS`). So a burst on one camera takes its share and
leaves the other cameras' shares free for their next frames, which are asked at once. A source
alone gets every slot.

A frame left out is kept (:attr:`FairShare.deferred`) and re-decided at the next step; it is
still in ``waiting``, so a sweep finds it too after a restart.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence

import redis

from gtx_stream.core.records import text
from gtx_stream.pipeline.dispatch import LabelerPool, Slot
from gtx_stream.store.keys import Keys, source_of, split_lease_member

ACTIVE_SECONDS = 5.0
"""A source whose frames wanted a request this recently still counts for the shares."""


class FairShare:
    def __init__(self, client: redis.Redis, keys: Keys, slots_per_labeler: int) -> None:
        self.r = client
        self.keys = keys
        self.slots = slots_per_labeler
        self.deferred: set[str] = set()
        self.active: dict[str, float] = {}  # source -> when its frames last wanted a request

    def outstanding(self) -> Counter[str]:
        """Outstanding requests per source, from the leases (one member per request)."""
        members = self.r.zrange(self.keys.leases, 0, -1)
        return Counter(source_of(split_lease_member(text(m))[0]) for m in members)

    def free(self, pool: LabelerPool) -> LabelerPool:
        """``pool`` without the labelers whose slots are all taken."""
        pool.available = {lab for lab in pool.available if pool.load.get(lab, 0) < self.slots}
        return pool

    def select(self, slots: Sequence[Slot], pool: LabelerPool) -> list[Slot]:
        """The slots to ask now, in the order the sources take turns; the others' frames go to
        :attr:`deferred`. ``pool`` must carry the load and be :meth:`free`'d."""
        capacity = sum(self.slots - pool.load.get(lab, 0) for lab in pool.available)
        total = self.slots * len(pool.available)
        out = self.outstanding()
        queues: dict[str, deque[Slot]] = defaultdict(deque)
        for slot in slots:
            if slot.room > 0:
                queues[source_of(slot.frame.frame_id)].append(slot)
        now = time.monotonic()
        self.active.update({src: now for src in queues})
        self.active = {src: at for src, at in self.active.items() if now - at <= ACTIVE_SECONDS}
        competing = set(self.active) | {src for src, n in out.items() if n > 0}
        share = max(1, math.ceil(total / max(1, len(competing))))
        chosen: list[Slot] = []
        while capacity > 0 and queues:
            src = min(queues, key=lambda s: (out[s], s))
            if out[src] >= share and len(competing) > 1:
                break  # the source with the fewest is at its share: so are all the others
            slot = queues[src].popleft()
            take = min(slot.room, capacity, max(1, share - out[src]))
            chosen.append(Slot(slot.frame, slot.allowed, take))
            out[src] += take
            capacity -= take
            if not queues[src]:
                del queues[src]
        picked = {slot.frame.frame_id for slot in chosen}
        self.deferred |= {s.frame.frame_id for s in slots if s.room > 0} - picked
        return chosen

    def take_deferred(self) -> set[str]:
        ids, self.deferred = self.deferred, set()
        return ids
