"""Housekeeping that heals what a crash, a silent labeler or a missing one left: leases that ran
out, frames left waiting with nothing outstanding, and open frames whose state expired.

Every open frame is found through one of two time-ordered sets, never by walking the open set:

- with an outstanding request, through ``leases`` (request -> lease deadline);
- with none, through ``waiting`` (frame -> when the sweep looks at it again). The script that
  leaves a frame so puts it there in the same atomic step (``open_frame.lua``: not asked yet;
  ``apply_labels.lua``: its last outstanding request answered or failed; ``expire_request.lua``:
  its last lease ran out), and the one that asks or ends it takes it out (``ask.lua`` on a
  granted request, ``finalise.lua``, ``drop_frame.lua``).

A frame stays in ``waiting`` while its decision asks for a labeler that cannot be asked: none is
live, those left are backed off or paused, the budget refused the request; or when a crash cut
the step short between applying a label and asking again. Each sweep takes at most
``max_due`` due frames, oldest due first, and stamps them due again (a frame still waiting
comes after the others next time), so a sweep costs what is due, not what is open.

A Redis from before ``waiting`` has open frames that are in neither set: the first sweep that
finds no ``waiting:seeded`` mark puts every open frame in ``waiting`` (due now) and sets the mark.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import redis

from gtx_stream.core.records import text
from gtx_stream.store import frame_scripts as scripts
from gtx_stream.store.keys import Keys, split_lease_member
from gtx_stream.store.scripts import ScriptRunner

log = logging.getLogger(__name__)

GONE_REASON = "frame state expired before finalisation (frame TTL)"

MAX_DUE = 1000
"""Expired leases, and due waiting frames, that one sweep takes at most (each); the rest are
taken by the next sweeps, oldest first. Bounds a sweep after an outage, when many are due."""

SEED_CHUNK = 10_000
"""Open frames per ZADD of the one-time seeding of ``waiting``."""


class Sweeper:
    def __init__(
        self, client: redis.Redis, keys: Keys, runner: ScriptRunner, max_due: int = MAX_DUE
    ) -> None:
        self.r = client
        self.keys = keys
        self.runner = runner
        self.max_due = max_due
        self._seeded = False

    def expire_leases(self) -> set[str]:
        """Frames whose outstanding request's lease ran out (now late): ask someone else."""
        now = time.time()
        members = self.r.zrangebyscore(self.keys.leases, "-inf", now, start=0, num=self.max_due)
        due = [text(m) for m in members]
        if not due:
            return set()
        pairs = [split_lease_member(m) for m in due]
        results = self.runner.run([
            scripts.expire_request(self.keys, frame_id=fid, labeler=lab, now=now)
            for fid, lab in pairs
        ])  # fmt: skip
        expired = {fid for (fid, _), res in zip(pairs, results, strict=True) if res}
        if expired:
            log.info("leases expired on %d frames: asking other labelers", len(expired))
        return expired

    def open_frames(self) -> set[str]:
        """Open frames with nothing outstanding that are due to be decided again (at most
        ``max_due``); the first call on a Redis without the ``waiting`` set seeds it first."""
        if not self._seeded:
            self.seed_waiting()
        due = self.runner.run_one(scripts.take_due(self.keys, now=time.time(),
                                                   limit=self.max_due))  # fmt: skip
        return set(due)

    def seed_waiting(self) -> int:
        """Once per Redis (the ``waiting:seeded`` mark): put every open frame in ``waiting``,
        due now, keeping the ones there already. Returns how many open frames were walked (0
        when the mark was found)."""
        if self.r.exists(self.keys.waiting_seeded):
            self._seeded = True
            return 0
        frames = self.walk_open_frames()
        now = time.time()
        pipe = self.r.pipeline(transaction=False)
        for i in range(0, len(frames), SEED_CHUNK):
            pipe.zadd(self.keys.waiting, dict.fromkeys(frames[i : i + SEED_CHUNK], now), nx=True)
        pipe.set(self.keys.waiting_seeded, repr(now))  # last: a crash before it walks again
        pipe.execute()
        self._seeded = True
        log.info("waiting set seeded with the %d open frames (once per Redis)", len(frames))
        return len(frames)

    def walk_open_frames(self) -> list[str]:
        """Every open frame: what each sweep re-decided before ``waiting`` (the seeding's walk,
        and the baseline of benchmarks/bench_sweep.py)."""
        return [text(f) for f in self.r.zrange(self.keys.open_frames, 0, -1)]

    def drop_gone(self, frame_ids: Sequence[str]) -> None:
        """Open frames whose hash is gone leave the open set, each with one dead letter."""
        self.runner.run([scripts.drop_frame(self.keys, fid, GONE_REASON) for fid in frame_ids])
