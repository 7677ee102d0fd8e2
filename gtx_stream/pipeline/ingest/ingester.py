"""The ingester: read a source, sample it, store each kept frame as JPEG and open it for labeling.

Opening is one Lua script (``lua/open_frame.lua``), atomic, that refuses a frame whose index is
not above the source's high-water mark (so a restarted ingester never opens a frame twice),
refuses while ``max_open_frames`` frames are open (backpressure: the ingester waits and tries
again) and refuses once the label budget is spent (the ingester stops).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import redis

from gtx_stream.config import ConfigError, Settings
from gtx_stream.pipeline.ingest.images import ImageError, encode_jpeg
from gtx_stream.pipeline.ingest.report import IngestReport
from gtx_stream.pipeline.ingest.sources import (
    InputError,
    Source,
    SourceError,
    SourceFrame,
    TaskSource,
    parse_source,
    read_truth_csv,
)
from gtx_stream.store import frame_scripts
from gtx_stream.store.budget_lease import budget_held, lease_for_open
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.frames import high_water_mark
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.shards import configured_keys

log = logging.getLogger(__name__)

__all__ = [
    "IngestReport", "InputError", "Sampler", "SourceError", "frame_id_of", "open_frame",
    "run_ingest",
]  # fmt: skip

FULL_WAIT_FIRST = 0.02  # seconds between tries while max open frames are open, doubling
FULL_WAIT_MAX = 0.5


SOURCE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class RedisLostWrites(redis.RedisError):
    """Redis restarted without writes this ingester had made: it must resume from Redis's
    high-water mark, not from where it is."""


class Sampler:
    """Every n-th frame (by index), then at most ``fps`` frames per second of source time.

    A frame is kept when its timestamp reaches the next slot; slots are ``1/fps`` apart.
    """

    def __init__(self, every: int = 1, fps: float = 0.0) -> None:
        self.every = every
        self.period = 1.0 / fps if fps > 0 else 0.0
        self._next_slot: float | None = None

    def wants(self, index: int, t: float) -> bool:
        if index % self.every:
            return False
        if not self.period:
            return True
        # a millionth of a period of slack: 3 * (1/30) must reach the slot at 0.1
        if self._next_slot is not None and t + 1e-6 * self.period < self._next_slot:
            return False
        slot = (self._next_slot if self._next_slot is not None else t) + self.period
        self._next_slot = slot if slot > t else t + self.period
        return True


def frame_id_of(source_id: str, frame_index: int) -> str:
    """A frame's id: its source's id and its index there, so reopening it is recognised."""
    return f"{source_id}-{frame_index}"


def open_frame(
    client: redis.Redis,
    keys: Keys,
    *,
    source: str,
    source_id: str,
    frame_index: int,
    jpeg: bytes,
    ttl: int,
    max_open_frames: int,
    fields: dict[str, str] | None = None,
    opened_at: float | None = None,
    reserve_per_frame: int = 1,
    reserved: bool = False,
    max_open_per_source: int = 0,
    source_share: int = 0,
) -> str:
    """Run ``open_frame.lua`` once: "opened", "duplicate", "budget" or "full".

    "full" also while the budget left could not give every open frame ``reserve_per_frame``
    more labels (the ingester passes kappa): the end of the budget finishes open frames. On a
    cluster also while other shards' open frames keep what is left (``budget_held``): what they
    leave comes back to the pool.
    ``reserved``: ``frame_index`` came from ``reserve_index.lua`` (``client.submit``).
    """
    frame_id = frame_id_of(source_id, frame_index)
    call = frame_scripts.open_frame(
        keys,
        frame_id=frame_id,
        frame_index=frame_index,
        source=source,
        source_id=source_id,
        opened_at=time.time() if opened_at is None else opened_at,
        ttl=ttl,
        max_open_frames=max_open_frames,
        reserve_per_frame=reserve_per_frame,
        jpeg=jpeg,
        fields=fields,
        reserved=reserved,
        max_open_per_source=max_open_per_source,
        source_share=source_share,
    )
    runner = ScriptRunner(client)
    code = runner.run_one(call)
    if keys.cluster and code in ("budget", "full"):
        # the shard's lease of the budget may be what is short: lease more, and try again
        shard = keys.of_frame(frame_id)
        if lease_for_open(client, shard, runner, reserve_per_frame, source_id, source_share) > 0:
            code = runner.run_one(call)
        if code == "budget" and budget_held(client, keys, source_id, source_share):
            code = "full"
    return code


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def run_ingest(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    source: str | None = None,
    *,
    truth_csv: str | Path | None = None,
    truths: dict[int, int] | None = None,
    tasks_dir: str | Path | None = None,
    stop_event: threading.Event | None = None,
    source_id: str | None = None,
) -> IngestReport:
    """Ingest ``source`` (or the tasks of the crowd dataset ``tasks_dir``) until it ends.

    Sampling comes from ``settings.ingest``. Stops at the end of input, after ``max_frames``
    sampled frames, when the budget is spent, or when ``stop_event`` is set (after the
    current frame). Frame ids are ``<source_id>-<index>``; ``source_id`` defaults to a hash of
    the source's path or URL (give one to keep ids stable when a file moves). Each frame's truth
    comes from ``truths`` (frame index -> 0 or 1) or else the ``truth_csv`` file.
    Raises :class:`SourceError` when the source cannot be read at all (:class:`InputError`
    when it never will be, as given: a missing file, say), and ConfigError when
    the frames would carry no truth while every configured labeler is ``simulated`` (each of
    their requests would fail).
    """
    if (source is None) == (tasks_dir is None):
        raise ValueError("give exactly one of source and tasks_dir")
    simulated = [lab.backend == "simulated" for lab in settings.labelers]
    no_truth = tasks_dir is None and truth_csv is None and truths is None
    if no_truth and simulated and all(simulated):
        raise ConfigError(
            "gtx-stream ingest: error: the frames would have no truth, and every configured "
            "labeler is simulated (it draws its labels from a frame's truth): give "
            "--truth CSV or --tasks DATASET_DIR"
        )
    cfg = settings.ingest
    stop = stop_event or threading.Event()
    src: Source
    if tasks_dir is not None:
        src = TaskSource(Path(tasks_dir))
    else:
        assert source is not None
        src = parse_source(source, reconnect_max_seconds=cfg.reconnect_max_seconds, stop=stop)
    if source_id is not None:
        if not SOURCE_ID.fullmatch(source_id):
            raise InputError(f"source id {source_id!r}: use letters, digits, '_', '.', '-'")
        src.source_id = source_id
    if truths is None:
        truths = read_truth_csv(truth_csv) if truth_csv is not None else {}
    src.open()
    try:  # once the source opened (an unreadable one writes nothing)
        keys = configured_keys(client, keys, settings.aggregator.shards)  # or refuses
    except BaseException:
        src.close()
        raise
    report = IngestReport(source=src.uri, source_id=src.source_id)
    try:
        _ingest(client, keys, settings, src, truths, stop, report)
    finally:
        src.close()
        report.read = src.stats.read
        report.corrupt = src.stats.corrupt
        report.reconnects = src.stats.reconnects
        report.truncated = src.stats.truncated
    # the caller shows the summary (`gtx-stream ingest` prints it): at INFO it came out twice
    log.debug("%s", report.summary())
    return report


def _ingest(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    src: Source,
    truths: dict[int, int],
    stop: threading.Event,
    report: IngestReport,
) -> None:
    cfg = settings.ingest
    fps = cfg.fps
    if fps and not src.fps and not src.live:
        log.warning("%s has no frame rate; --fps ignored", src.uri)
        fps = 0.0
    sampler = Sampler(cfg.every, fps)
    high_water = high_water_mark(client, keys, src.source_id)
    if src.live:
        src.start_index = high_water + 1
    log.info("ingesting %s as source %s", src.uri, src.source_id)

    def wants(index: int, t: float) -> bool:
        if sampler.wants(index, t):
            return True
        report.skipped += 1
        return False

    last_gray: np.ndarray | None = None
    kept = 0
    last_opened = high_water
    for frame in src.frames(wants):
        if cfg.skip_still and frame.image is not None:
            gray = _gray(frame.image)
            if (
                last_gray is not None
                and gray.shape == last_gray.shape
                and float(cv2.absdiff(gray, last_gray).mean()) < cfg.still_threshold
            ):
                report.skipped += 1
                continue
            last_gray = gray
        kept += 1
        if frame.index <= high_water:
            # refused by open_frame.lua too; known before encoding the JPEG
            report.duplicates += 1
        else:
            code = _open_with_backpressure(
                client, keys, settings, src, frame, truths, stop, last_opened
            )
            if code == "opened":
                report.opened += 1
                last_opened = frame.index
                if truths and frame.index not in truths:  # a typo in the truth file, likely
                    report.no_truth += 1
                    if report.no_truth == 1:
                        log.warning("%s: frame %d has no row in the truth file: opened without "
                                    "truth (a simulated labeler cannot label it); the summary "
                                    "counts such frames", src.uri, frame.index)  # fmt: skip
            elif code == "duplicate":
                report.duplicates += 1
            elif code == "full":
                report.dropped += 1
            elif code == "budget":
                log.info("label budget (or this source's share of it) spent: stopping %s", src.uri)
                report.stopped = "budget"
                return
            elif code == "stop":
                report.stopped = "stop"
                return
        if cfg.max_frames and kept >= cfg.max_frames:
            report.stopped = "max_frames"
            return
        if stop.is_set():
            report.stopped = "stop"
            return
    if stop.is_set():
        report.stopped = "stop"


def _open_with_backpressure(
    client: redis.Redis,
    keys: Keys,
    settings: Settings,
    src: Source,
    frame: SourceFrame,
    truths: dict[int, int],
    stop: threading.Event,
    last_opened: int,
) -> str:
    """Open ``frame``, waiting while max open frames are open; "stop" when asked to stop.

    A live source (camera, stream) does not wait: its frame is dropped ("full").

    While Redis is unreachable the frame is kept and opening retried. If Redis comes back
    without frames this process had opened (a crash lost its last writes: the source's
    high-water mark is below ``last_opened``), raise :class:`RedisLostWrites`: a restarted
    ingester resumes at the mark and opens those frames again.
    """
    jpeg = frame.jpeg
    if jpeg is None:
        assert frame.image is not None
        try:
            jpeg = encode_jpeg(frame.image, settings.ingest.jpeg_quality)
        except ImageError as err:
            raise SourceError(f"{src.uri}: frame {frame.index}: {err}") from None
    fields = dict(frame.fields)
    if frame.index in truths:
        fields["truth"] = str(truths[frame.index])
    wait = FULL_WAIT_FIRST
    waiting_since: float | None = None
    outage: float | None = None
    while True:
        try:
            if outage is not None:
                # back from an outage: did Redis keep what this process opened?
                mark = high_water_mark(client, keys, src.source_id)
                if mark < last_opened:
                    raise RedisLostWrites(
                        f"Redis came back without frames {mark + 1}..{last_opened} of "
                        f"{src.uri} (writes lost in a crash): restart the ingester to open "
                        "them again"
                    )
            code = open_frame(
                client,
                keys,
                source=src.uri,
                source_id=src.source_id,
                frame_index=frame.index,
                jpeg=jpeg,
                ttl=settings.ingest.frame_ttl,
                max_open_frames=settings.aggregator.max_open_frames,
                fields=fields,
                reserve_per_frame=settings.aggregator.reserve_per_frame,
                max_open_per_source=settings.ingest.max_open_per_source,
                source_share=settings.aggregator.budget_per_source,
            )
        except UNAVAILABLE as err:
            # Redis restarting: keep this frame and try again, for up to redis_outage_seconds
            # (opening is idempotent: a frame that did get opened comes back "duplicate")
            now = time.monotonic()
            outage = now if outage is None else outage
            if now - outage > settings.ingest.redis_outage_seconds:
                raise
            log.warning("redis unreachable (%s): retrying frame %d", err, frame.index)
            if stop.wait(min(2.0, 0.1 * 2 ** min(5, int(now - outage)))):
                return "stop"
            continue
        if outage is not None:
            log.info("redis is back after %.1f s", time.monotonic() - outage)
            outage = None
        if code == "full" and src.live:
            # a camera does not wait: waiting would open a stale frame later and let the
            # capture buffer fill with more; drop this one and label a fresh one when a slot
            # frees up
            return code
        if code != "full":
            if waiting_since is not None:
                log.debug("waited %.2fs for an open slot", time.monotonic() - waiting_since)
            return code
        if waiting_since is None:
            waiting_since = time.monotonic()
            log.debug("%d frames open: waiting", settings.aggregator.max_open_frames)
        if stop.wait(wait):
            return "stop"
        wait = min(wait * 2, FULL_WAIT_MAX)
