"""The exporter: a consumer group on the final stream that writes a dataset folder exactly once.

Per batch: read final records through the group (taking over what a dead exporter left
pending), GET their JPEGs in one round trip, write each image (temporary file, fsync, rename,
fsync of the folder), append the batch's manifest rows (fsynced), and only then, in one
MULTI: DEL the JPEGs, XACK the entries and count them in ``stats``. A kill at any moment
leaves either no trace of a frame (its entry is redelivered, its JPEG still in Redis) or its
manifest row; a redelivered frame that has a row is only acknowledged. An image file without a
row (killed between the rename and the manifest) is removed at start and written again when
its entry comes back.

One exporter per group: it holds a lock on its folder, and at every read it takes over the
group's pending entries at once, since any other consumer of its group is a dead predecessor.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import redis

from gtx_stream.config import EXIT_CONFIG, ExportSettings
from gtx_stream.core.records import DeadLetter, FinalRecord, RecordError, text
from gtx_stream.pipeline.aggregate.consumer import GroupConsumer, StreamEntry
from gtx_stream.pipeline.export.layout import (
    TMP_DIR,
    ExportError,
    class_folder_files,
    image_path,
    split_of_record,
    write_atomic,
)
from gtx_stream.pipeline.export.manifest import (
    ImageStatus,
    Manifest,
    Row,
    append_metadata,
    rebuild_metadata,
    row_of,
)
from gtx_stream.pipeline.export.parquet import ParquetSink
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import stored_keys

log = logging.getLogger(__name__)

FORMATS = ("folder", "parquet")
STAT_OF: dict[str, str] = {
    "ok": "images_exported",
    "missing": "images_missing",
    "filtered": "images_filtered",
}
"""The ``stats`` counter of each image status (``gtx-stream status`` shows them)."""
RECONNECT_FIRST = 0.1  # seconds before the first retry when Redis is unreachable, doubling
RECONNECT_MAX = 2.0
_ANY_IDLE_SECONDS = 0.001  # take over every pending entry: the group has one live consumer


@dataclass
class ExportReport:
    """What one run did; ``already`` counts redelivered frames that had a row (only acked)."""

    out: Path
    exported: int = 0
    missing: int = 0
    filtered: int = 0
    already: int = 0
    malformed: int = 0
    reasons_missing: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"exported {self.exported} images to {self.out} ({self.missing} missing, "
                f"{self.filtered} filtered, {self.already} already there, "
                f"{self.malformed} malformed)")  # fmt: skip


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def below(value: float, limit: float) -> str:
    """``value`` to 4 places, or more where 4 would round it up to ``limit`` or past it."""
    for places in range(4, 18):
        shown = f"{value:.{places}f}"
        if float(shown) < limit:
            return shown
    return repr(value)


def missing_note(record: FinalRecord, now: float) -> str:
    """Why a finalised frame's JPEG is gone, from the TTL ``finalise.lua`` recorded."""
    expires = record.image_expires_at
    if math.isnan(expires):
        return "gone at finalisation (no image in Redis when the frame was finalised)"
    if now >= expires:
        return f"TTL ran out at {_iso(expires)} (ingest.frame_ttl) before it was exported"
    return (f"gone before its TTL (kept until {_iso(expires)}): a Redis restart without "
            f"persistence, an eviction or a manual delete")  # fmt: skip


class Exporter:
    """Writes final records and their images into ``out`` through the group ``settings.group``."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: ExportSettings,
        out: Path,
        *,
        fmt: str = "folder",
        consumer: str | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}",
                              EXIT_CONFIG)  # fmt: skip
        self.r = client
        self.keys = keys = stored_keys(client, keys)  # on a Redis Cluster: a final stream per shard
        self.settings = settings
        self.out = out
        self.fmt = fmt
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        finals = [shard.final for shard in keys.state_shards()]
        self.group = GroupConsumer(client, keys, self.consumer, settings.batch_size,
                                   _ANY_IDLE_SECONDS, group=settings.group,
                                   streams=finals)  # fmt: skip
        self.manifest = Manifest(out)
        self.parquet = ParquetSink(out) if fmt == "parquet" else None
        self.report = ExportReport(out)
        self._lock: int | None = None

    # --- start -----------------------------------------------------------------------------

    def setup(self) -> None:
        """Lock the folder, repair it after a crash, create the group at id 0 if needed."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(self.out / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ExportError(f"{self.out} is in use by another exporter") from None
        try:
            cut = self.manifest.recover()
        except ValueError as err:
            raise ExportError(str(err)) from None
        if cut:
            log.warning("manifest: cut a partial last line (%d bytes) left by a crash", cut)
        self._refuse_other_format()
        shutil.rmtree(self.out / TMP_DIR, ignore_errors=True)
        if self.parquet is not None:
            self.parquet.recover(self.manifest)
        else:
            self._remove_orphans()
            rebuild_metadata(self.out, self.manifest.rows.values())
        if not self.manifest.rows:
            self._warn_if_read_elsewhere()
        self.group.create_group()

    def _warn_if_read_elsewhere(self) -> None:
        """A new folder on a group that has read entries gets only the frames after them: the
        ones before went into the folder the group wrote first, and their JPEGs are gone."""
        counts: list[int | None] = []  # entries read, per final stream (None: Redis lost count)
        for stream in self.group.streams:
            try:
                groups = cast(list[dict[str, Any]], self.r.xinfo_groups(stream))
            except redis.ResponseError:  # no stream yet: no group either
                continue
            counts += [g.get("entries-read") for g in groups
                       if text(g["name"]) == self.settings.group
                       and text(g["last-delivered-id"]) != "0-0"]  # fmt: skip
        if counts:
            n = "" if None in counts else f" {sum(c or 0 for c in counts)}"
            log.warning("%s has no manifest yet, but the group %r has already read%s final "
                        "entries into another folder: only frames finalised after them come "
                        "here (export.group names the group)", self.out, self.settings.group,
                        n)  # fmt: skip

    def _refuse_other_format(self) -> None:
        for row in self.manifest.rows.values():
            if row["image_status"] == "ok":
                other = row["file_name"].endswith(".parquet") != (self.fmt == "parquet")
                if other:
                    raise ExportError(f"{self.out} holds an export in the other format "
                                      f"({row['file_name']}): choose another --out",
                                      EXIT_CONFIG)  # fmt: skip
                return

    def _remove_orphans(self) -> None:
        """Image files without a manifest row: a crash after their rename. Their entries are
        still pending, so they are written again."""
        known = {r["file_name"] for r in self.manifest.rows.values() if r["image_status"] == "ok"}
        for rel, path in class_folder_files(self.out).items():
            if rel not in known:
                log.info("removing %s: no manifest row (written before a crash)", rel)
                path.unlink()

    def close(self) -> None:
        """Unlock the folder (and remove the empty temporary folder: nothing but the dataset
        stays beside the splits)."""
        shutil.rmtree(self.out / TMP_DIR, ignore_errors=True)
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    # --- the loop --------------------------------------------------------------------------

    def run(self, stop: threading.Event, follow: bool, block_ms: int = 1000) -> ExportReport:
        """Export until ``stop`` (``follow``) or until the stream as it is now is exported."""
        ends = {}  # each final stream's last entry now: not following, the export ends there
        for stream in self.group.streams:
            last = cast(list[Any], self.r.xrevrange(stream, count=1))
            ends[stream] = text(last[0][0]) if last else "0-0"
        reached = {stream for stream, end in ends.items() if end == "0-0"}
        wait = RECONNECT_FIRST
        while not stop.is_set():
            try:
                entries = self.group.read(block_ms if follow else 1)
                if entries:
                    self.export_batch(entries)
            except UNAVAILABLE as err:
                if not follow:
                    raise
                # Redis restarting: what this batch wrote is on disk and in the manifest, its
                # entries stay pending and come back (claimed), and are then only acknowledged
                log.warning("redis unavailable (%s): retrying in %.1f s", err, wait)
                stop.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX)
                continue
            wait = RECONNECT_FIRST
            if not entries and not follow:
                break
            if not follow:
                reached |= {e.stream for e in entries if _id_at_least(e.entry_id, ends[e.stream])}
                if len(reached) == len(ends):
                    break
        return self.report

    def export_batch(self, entries: list[StreamEntry]) -> None:
        """One batch: images to disk, manifest rows fsynced, then DEL + XACK + counts."""
        records: list[FinalRecord] = []
        bad: list[DeadLetter] = []
        for e in entries:
            try:
                records.append(FinalRecord.from_fields(e.fields, e.entry_id))
            except RecordError as err:
                log.error("final entry %s: %s", e.entry_id, err)
                bad.append(DeadLetter.of("final", str(err), e.fields, e.entry_id))
        fresh: dict[str, FinalRecord] = {}
        for rec in records:
            if rec.frame_id not in self.manifest and rec.frame_id not in fresh:
                fresh[rec.frame_id] = rec
        images = self._get_images(list(fresh.values()))
        rows = [self._export_one(rec, images[rec.frame_id]) for rec in fresh.values()]
        if self.parquet is not None:
            rows = self.parquet.write_batch(rows, images)
        self.manifest.append(rows)
        if self.parquet is None:
            append_metadata(self.out, rows)
        self._settle(entries, records, bad)
        r = self.report
        for row in rows:
            status = row["image_status"]
            r.exported += status == "ok"
            r.missing += status == "missing"
            r.filtered += status == "filtered"
        r.already += len(records) - len(rows)
        r.malformed += len(bad)

    def _get_images(self, records: list[FinalRecord]) -> dict[str, bytes | None]:
        pipe = self.r.pipeline(transaction=False)
        for rec in records:
            pipe.get(rec.image_key or self.keys.image(rec.frame_id))
        return {rec.frame_id: jpeg for rec, jpeg in zip(records, pipe.execute(), strict=True)}

    def _export_one(self, rec: FinalRecord, jpeg: bytes | None) -> Row:
        s = self.settings
        split = split_of_record(rec, s)
        class_name = s.class_names[rec.label] if rec.label in (0, 1) else str(rec.label)
        written = None
        status: ImageStatus
        if rec.confidence < s.min_confidence:
            shown = below(rec.confidence, s.min_confidence)
            status, note = "filtered", f"confidence {shown} < {s.min_confidence}"
        elif rec.reason not in s.reasons:
            status, note = "filtered", f"reason {rec.reason!r} not in export.reasons"
        elif jpeg is None:
            status, note = "missing", missing_note(rec, time.time())
        else:
            status, note = "ok", ""
            if self.parquet is None:
                written = write_atomic(self.out, image_path(split, class_name, rec.frame_id), jpeg)
        return row_of(rec, split=split, class_name=class_name, status=status, note=note,
                      written=written, exported_at=time.time())  # fmt: skip

    def _settle(
        self, entries: list[StreamEntry], records: list[FinalRecord], bad: list[DeadLetter]
    ) -> None:
        """One MULTI: the JPEGs go, the entries are acknowledged and counted, or none of it
        happens (then they are redelivered, and counted then: exactly once in ``stats``)."""
        if len(self.group.streams) == 1:
            self._settle_stream(self.keys, entries, records, bad)
            return
        # a Redis Cluster: one MULTI per shard, in the shard's slot (its final stream, stats,
        # dead stream, and the images of its frames)
        by_stream: dict[str, list[StreamEntry]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e)
        for stream, mine in by_stream.items():
            ids = {e.entry_id for e in mine}
            shard = self.keys.shard_of_stream(stream)
            self._settle_stream(shard, mine, [r for r in records if r.entry_id in ids],
                                [b for b in bad if b.entry_id in ids])  # fmt: skip

    def _settle_stream(
        self,
        keys: Keys,
        entries: list[StreamEntry],
        records: list[FinalRecord],
        bad: list[DeadLetter],
    ) -> None:
        counts: dict[str, int] = {}
        for rec in records:
            status = self.manifest.rows[rec.frame_id]["image_status"]
            counts[STAT_OF[status]] = counts.get(STAT_OF[status], 0) + 1
        pipe = self.r.pipeline(transaction=True)
        for rec in records:
            pipe.delete(rec.image_key or keys.image(rec.frame_id))
        for letter in bad:
            pipe.xadd(keys.dead, letter.to_fields())  # type: ignore[arg-type]
        for name, n in counts.items():
            pipe.hincrby(keys.stats, name, n)
        pipe.xack(keys.final, self.settings.group, *[e.entry_id for e in entries])
        pipe.execute()


def _id_at_least(entry_id: str, end: str) -> bool:
    ms, _, seq = entry_id.partition("-")
    end_ms, _, end_seq = end.partition("-")
    return (int(ms), int(seq or 0)) >= (int(end_ms), int(end_seq or 0))
