"""Housekeeping that heals what a crash or a silent labeler left: leases that ran out, and
open frames whose state expired."""

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


class Sweeper:
    def __init__(self, client: redis.Redis, keys: Keys, runner: ScriptRunner) -> None:
        self.r = client
        self.keys = keys
        self.runner = runner

    def expire_leases(self) -> set[str]:
        """Frames whose outstanding request's lease ran out (now late): ask someone else."""
        due = [text(m) for m in self.r.zrangebyscore(self.keys.leases, "-inf", time.time())]
        if not due:
            return set()
        pairs = [split_lease_member(m) for m in due]
        results = self.runner.run(
            [scripts.expire_request(self.keys, frame_id=fid, labeler=lab) for fid, lab in pairs]
        )
        expired = {fid for (fid, _), res in zip(pairs, results, strict=True) if res}
        if expired:
            log.info("leases expired on %d frames: asking other labelers", len(expired))
        return expired

    def open_frames(self) -> set[str]:
        return {text(f) for f in self.r.zrange(self.keys.open_frames, 0, -1)}

    def drop_gone(self, frame_ids: Sequence[str]) -> None:
        """Open frames whose hash is gone leave the open set, each with one dead letter."""
        self.runner.run([scripts.drop_frame(self.keys, fid, GONE_REASON) for fid in frame_ids])
