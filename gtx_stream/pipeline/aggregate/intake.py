"""Labels-stream entries into frames: parse, apply once with ``apply_labels.lua``, dead-letter
the rest."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import redis

from gtx_stream.core.records import DeadLetter, FrameOpened, LabelEntry, RecordError
from gtx_stream.pipeline.aggregate.consumer import StreamEntry
from gtx_stream.pipeline.aggregate.report import BatchReport
from gtx_stream.store import frame_scripts as scripts
from gtx_stream.store.frames import FrameState
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.scripts import ScriptRunner

log = logging.getLogger(__name__)

DEAD_REASONS = {
    "duplicate": "duplicate: this labeler already labeled this frame",
    "unknown_frame": "unknown frame",
    "unknown_labeler": "unknown labeler (not registered)",
    "finalised": "frame already finalised",
    "unsolicited": "unsolicited: this labeler was never asked about this frame",
    "mismatch": "request mismatch: not the request this labeler has on this frame",
    "after_failure": "request mismatch: this request was reported failed",
}
"""Dead-letter reason of each ``apply_labels.lua`` status that refuses an entry."""

SETTLED = ("applied", "failed", "redelivered")
"""Statuses after which the frame is decided again."""


@dataclass
class Intake:
    """What a batch brought: frames to decide, and the state of those the script returned."""

    touched: set[str] = field(default_factory=set)
    known: dict[str, FrameState | None] = field(default_factory=dict)
    budget_read: bool = False
    """Whether ``budget_left`` was read with the labels (else it is to be read)."""
    budget_left: int | None = None


class LabelIntake:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        runner: ScriptRunner,
        backoff: scripts.BackoffPolicy,
    ) -> None:
        self.r = client
        self.keys = keys
        self.runner = runner
        self.backoff = backoff

    def take(self, entries: Sequence[StreamEntry], report: BatchReport) -> Intake:
        """Apply the batch's labels and failure reports in one script call."""
        out = Intake()
        labels: list[tuple[str, LabelEntry]] = []
        raw: list[StreamEntry] = []
        dead: list[DeadLetter] = []
        opened = self.keys.opened
        parse = LabelEntry.from_fields
        sharded = self.keys.shards > 1
        astray: list[tuple[str, StreamEntry]] = []
        for e in entries:
            if e.stream == opened:
                try:
                    fid = FrameOpened.from_fields(e.fields).frame_id
                except RecordError as err:
                    log.warning("opened entry %s ignored: %s", e.entry_id, err)
                    continue
                if sharded and self._astray(fid):
                    astray.append((self.keys.of_frame(fid).opened, e))
                else:
                    out.touched.add(fid)
                continue
            try:
                entry = parse(e.fields)
            except RecordError as err:
                dead.append(DeadLetter.of("label", str(err), e.fields, e.entry_id))
                continue
            if sharded and self._astray(entry.frame_id):
                astray.append((self.keys.of_frame(entry.frame_id).labels, e))
                continue
            labels.append((e.entry_id, entry))
            raw.append(e)
        if astray:
            self._forward(astray)
        report.labels_read += len(labels) + len(dead)
        if labels:
            applied = self.runner.run_one(
                scripts.apply_labels(self.keys, labels, self.backoff, time.time())
            )
            counts = report.counts
            touched = out.touched
            for (_, entry), e, status in zip(labels, raw, applied.statuses, strict=True):
                counts[status] = counts.get(status, 0) + 1
                if status == "applied":
                    report.applied += 1
                    touched.add(entry.frame_id)
                elif status in SETTLED:
                    touched.add(entry.frame_id)
                    if status == "failed":
                        report.failed += 1
                        log.info("request %s of %s for %s failed: %s", entry.request_id,
                                 entry.labeler, entry.frame_id, entry.reason)  # fmt: skip
                else:
                    reason = DEAD_REASONS.get(status, status)
                    dead.append(DeadLetter.of("label", reason, e.fields, e.entry_id))
            out.known.update(applied.frames)
            out.budget_read, out.budget_left = True, applied.budget_left
        if dead:
            self._dead_letter(dead)
            report.dead += len(dead)
        return out

    def _astray(self, frame_id: str) -> bool:
        return shard_of(frame_id, self.keys.shards) != self.keys.shard

    def _forward(self, astray: Sequence[tuple[str, StreamEntry]]) -> None:
        """Entries of another shard's frames (only a hand-written XADD, or a producer that
        ignored the stored shard count, puts one here) go to their own shard's stream: applied
        here they would settle the wrong shard's leases and waiting set."""
        pipe = self.r.pipeline(transaction=False)
        for stream, e in astray:
            pipe.xadd(stream, dict(e.fields))  # type: ignore[arg-type]
        pipe.execute()
        log.warning("%d entries of other shards' frames forwarded to their shards", len(astray))

    def _dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        pipe = self.r.pipeline(transaction=False)
        for letter in letters:
            pipe.xadd(self.keys.dead, letter.to_fields())  # type: ignore[arg-type]
            pipe.hincrby(self.keys.stats, "dead", 1)
            log.warning("dead letter (%s): %s %s", letter.kind, letter.reason, letter.payload[:200])
        pipe.execute()
