"""The /admin dashboard's figures, read from Redis (and usable by ``status``).

Rates per minute come from samples of the pipeline's counters (``stats.frames_opened``,
``stats.frames_finalised``, ``budget.spent``, ``stats.labels_applied``) that the dashboard's
reader writes into ``keys.dashboard_samples`` (a ZSET, score = unix seconds) at most every
:data:`SAMPLE_SECONDS`, kept :data:`KEEP_SECONDS`: a few hundred bytes a minute, bounded, and
one ZRANGEBYSCORE per read however fast frames go. The counters' growth between two samples is
spread over the minutes between them, so a gap (nobody watching) shows as an even rate over
the gap, not a spike. Counting the streams' entry ids instead would read every entry of the
last hour at each refresh, and retention trims ``opened`` down to the open frames.

Labels per frame come from the final records themselves (their ``n_labels``), the last
:data:`RECENT_FINALS` of them; the thumbnails from the last few, with whether each JPEG is still
in Redis (an exporter deletes it once it is on disk).

The counters are read once per refresh (:func:`gtx_stream.store.state.state_totals`), summed
over the shards' copies on a Redis Cluster, where the final records are merged from every
shard's final stream, newest entry id first, and the per-source rows summed over the shards.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

import redis

from gtx_stream.core.records import FinalRecord, RecordError, text
from gtx_stream.store import params
from gtx_stream.store.keys import Keys, source_of
from gtx_stream.store.state import StateTotals, state_totals

SAMPLE_SECONDS = 5.0
KEEP_SECONDS = 24 * 3600.0
WINDOW_MINUTES = 60
RECENT_FINALS = 1000
THUMBNAILS = 12


@dataclass(frozen=True)
class Sample:
    """The pipeline's counters at one moment."""

    t: float
    opened: int
    finalised: int
    spent: int
    applied: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Sample:
        d = json.loads(raw)
        return cls(float(d["t"]), int(d["opened"]), int(d["finalised"]), int(d["spent"]),
                   int(d["applied"]))  # fmt: skip


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def take_sample(client: redis.Redis, keys: Keys, now: float | None = None) -> Sample:
    """The counters now (one round trip)."""
    t = time.time() if now is None else now
    totals = state_totals(client, keys)
    stats, spent = totals.stats, totals.budget.get("spent", 0)
    return Sample(t, stats.get("frames_opened", 0), stats.get("frames_finalised", 0), spent,
                  stats.get("labels_applied", 0))  # fmt: skip


def record_sample(
    client: redis.Redis,
    keys: Keys,
    now: float | None = None,
    every: float = SAMPLE_SECONDS,
    keep: float = KEEP_SECONDS,
) -> Sample | None:
    """Write a sample unless the newest one is younger than ``every`` seconds; drop samples
    older than ``keep``. Two servers racing may both write one: that is harmless."""
    now = time.time() if now is None else now
    last = cast(list[Any], client.zrange(keys.dashboard_samples, -1, -1, withscores=True))
    if last and now - float(last[0][1]) < every:
        return None
    sample = take_sample(client, keys, now)
    pipe = client.pipeline(transaction=False)
    pipe.zadd(keys.dashboard_samples, {sample.to_json(): now})
    pipe.zremrangebyscore(keys.dashboard_samples, "-inf", f"({now - keep}")
    pipe.execute()
    return sample


def read_samples(client: redis.Redis, keys: Keys, since: float) -> list[Sample]:
    """Samples from ``since`` on, oldest first, with the one just before ``since`` (the
    growth up to the first sample of the window starts there)."""
    before = cast(
        list[Any], client.zrevrangebyscore(keys.dashboard_samples, f"({since}", "-inf", 0, 1)
    )
    inside = cast(list[Any], client.zrangebyscore(keys.dashboard_samples, since, "+inf"))
    out = []
    for raw in [*before, *inside]:
        try:
            out.append(Sample.from_json(raw))
        except (ValueError, KeyError, TypeError):
            continue  # not one of ours: skip it rather than fail the page
    return out


def minute_starts(now: float, minutes: int = WINDOW_MINUTES) -> list[float]:
    """The starts of the last ``minutes`` wall-clock minutes, the current one last."""
    current = math.floor(now / 60.0) * 60.0
    return [current - 60.0 * (minutes - 1 - i) for i in range(minutes)]


def per_minute(
    samples: Sequence[Sample], now: float, minutes: int = WINDOW_MINUTES
) -> dict[str, list[float]]:
    """Frames opened, frames finalised, labels spent and labels applied in each of the last
    ``minutes`` minutes. Each pair of consecutive samples gives its growth to the minutes it
    spans, in proportion to the time spent in each; a counter that went down (a flushed
    database) gives nothing. The last minute is the current one, counted so far."""
    starts = minute_starts(now, minutes)
    first = starts[0]
    series = {name: [0.0] * minutes for name in ("opened", "finalised", "spent", "applied")}
    for a, b in zip(samples, samples[1:], strict=False):
        span = b.t - a.t
        if span <= 0:
            continue
        for name, values in series.items():
            grew = getattr(b, name) - getattr(a, name)
            if grew <= 0:
                continue
            lo, hi = max(a.t, first), b.t
            if hi <= lo:
                continue
            i = int((lo - first) // 60)
            while i < minutes and starts[i] < hi:
                overlap = min(hi, starts[i] + 60.0) - max(lo, starts[i])
                if overlap > 0:
                    values[i] += grew * overlap / span
                i += 1
    out: dict[str, list[float]] = {"minutes": starts}
    for name, values in series.items():
        out[name] = [round(v, 3) for v in values]
    return out


def _field(fields: Mapping[Any, Any], name: str) -> str:
    value = fields.get(name.encode(), fields.get(name))
    return "" if value is None else text(value)


def _entry_seconds(entry_id: str) -> float:
    return int(entry_id.split("-")[0]) / 1000.0


@dataclass(frozen=True)
class FinalEntry:
    """What the dashboard needs of one final entry: its id, when it was finalised (its own
    time, else its entry id's milliseconds), its label count, and the raw fields."""

    entry_id: str
    finalised_at: float
    n_labels: int
    fields: Mapping[Any, Any]

    def record(self) -> FinalRecord | None:
        """The full record (None when malformed)."""
        try:
            decoded = {text(k): text(v) for k, v in self.fields.items()}
            return FinalRecord.from_fields(decoded, self.entry_id)
        except RecordError:
            return None


def recent_finals(client: redis.Redis, keys: Keys, count: int = RECENT_FINALS) -> list[FinalEntry]:
    """The last ``count`` final entries, newest first, read lightly: only the label count and
    the time are decoded (a full record costs about 50 us, 1000 of them each refresh add up).
    On a Redis Cluster, the newest ``count`` over every shard's final stream."""
    shards = keys.state_shards()
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.xrevrange(shard.final, "+", "-", count=count)
    raw: list[Any] = [e for entries in pipe.execute() for e in entries]
    if len(shards) > 1:
        raw.sort(key=lambda e: tuple(int(x) for x in text(e[0]).split("-")), reverse=True)
    out = []
    for raw_id, fields in raw[:count]:
        entry_id = text(raw_id)
        try:
            n_labels = int(_field(fields, "n_labels") or len(json.loads(_field(fields, "labels"))))
            at = float(_field(fields, "finalised_at") or "nan")
        except (ValueError, TypeError):
            continue
        at = _entry_seconds(entry_id) if math.isnan(at) else at
        out.append(FinalEntry(entry_id, at, n_labels, fields))
    return out


def labels_per_frame(
    entries: Sequence[FinalEntry], now: float, minutes: int = WINDOW_MINUTES
) -> dict[str, Any]:
    """The mean number of labels of the frames finalised in each minute (None when none was),
    how many frames each mean rests on, and the mean over all of ``entries``."""
    starts = minute_starts(now, minutes)
    total = [0] * minutes
    frames = [0] * minutes
    for e in entries:
        i = int((e.finalised_at - starts[0]) // 60)
        if 0 <= i < minutes:
            total[i] += e.n_labels
            frames[i] += 1
    mean = [round(t / n, 3) if n else None for t, n in zip(total, frames, strict=True)]
    overall = sum(e.n_labels for e in entries) / len(entries) if entries else None
    return {"minutes": starts, "mean": mean, "frames": frames,
            "recent_mean": None if overall is None else round(overall, 3),
            "recent_frames": len(entries)}  # fmt: skip


def _reason(value: Any) -> str:
    """The ``reason`` of a JSON object, else the text itself."""
    try:
        raw = json.loads(text(value))
    except ValueError:
        return text(value)
    return str(raw.get("reason") or "paused") if isinstance(raw, dict) else text(value)


def paused_people(client: redis.Redis, keys: Keys) -> dict[str, str]:
    """Paused people -> why, from ``keys.paused`` when the pipeline has one (a hash of JSON
    objects with a ``reason`` or of plain reasons, or a set or sorted set of ids)."""
    name = getattr(keys, "paused", None)
    if not isinstance(name, str):
        return {}
    kind = text(client.type(name))
    if kind == "hash":
        raw = cast(dict[Any, Any], client.hgetall(name))
        return {text(k): _reason(v) for k, v in sorted(raw.items())}
    if kind == "set":
        return {text(m): "paused" for m in sorted(cast(set[Any], client.smembers(name)))}
    if kind == "zset":
        return {text(m): "paused" for m in cast(list[Any], client.zrange(name, 0, -1))}
    return {}


def labeler_rows(
    client: redis.Redis,
    keys: Keys,
    backends: Mapping[str, str],
    live_seconds: float,
    now: float,
    stats: Mapping[str, int],
) -> list[dict[str, Any]]:
    """Every registered labeler (and every configured person, registered or not yet): its
    accuracy and interval, where it came from, labels given, whether it is live, seconds since
    its last heartbeat, paused or not. ``backends`` maps configured ids to their backend;
    ``human`` is a person, any other a machine, an id not configured ``unknown``; ``stats``:
    the pipeline's counters (:class:`StateTotals`)."""
    registered = params.get_labelers(client, keys)
    beats = cast(list[Any], client.zrange(keys.live, 0, -1, withscores=True))
    live = {text(k): float(v) for k, v in beats}
    paused = paused_people(client, keys)
    ids = sorted(set(registered) | {i for i, b in backends.items() if b == "human"} | set(paused))
    rows = []
    for lid in ids:
        rec = registered.get(lid)
        backend = backends.get(lid)
        seen = live.get(lid)
        rows.append({
            "id": lid,
            "kind": "unknown" if backend is None else "person" if backend == "human" else "machine",
            "backend": backend,
            "registered": rec is not None,
            "accuracy": None if rec is None else rec.accuracy,
            "lower": None if rec is None else rec.lower,
            "upper": None if rec is None else rec.upper,
            "source": None if rec is None else rec.source,
            "n": None if rec is None else rec.n,
            "labels": stats.get(f"labels:{lid}", 0),
            "failed": stats.get(f"failed:{lid}", 0),
            "live": seen is not None and now - seen <= live_seconds,
            "last_seen_s": None if seen is None else round(max(0.0, now - seen), 1),
            "paused": paused.get(lid),
        })  # fmt: skip
    return rows


def thumbnails(
    client: redis.Redis, entries: Sequence[FinalEntry], count: int = THUMBNAILS
) -> list[dict[str, Any]]:
    """The newest ``count`` of ``entries`` (newest first) with whether each one's JPEG is
    still in Redis (``has_image``)."""
    chosen = [(e, rec) for e in entries[:count] if (rec := e.record()) is not None]
    pipe = client.pipeline(transaction=False)
    for _, rec in chosen:
        pipe.exists(rec.image_key or "\0no image key")
    present = pipe.execute() if chosen else []
    return [
        {"frame_id": rec.frame_id, "entry_id": rec.entry_id, "label": rec.label,
         "confidence": rec.confidence, "p1": rec.p1, "reason": rec.reason,
         "n_labels": rec.n_labels, "labelers": rec.labelers,
         "finalised_at": e.finalised_at, "has_image": bool(rec.image_key) and bool(n)}
        for (e, rec), n in zip(chosen, present, strict=True)
    ]  # fmt: skip


def budget(totals: StateTotals) -> dict[str, Any]:
    """Labels spent (obtained or outstanding), the limit (None: unlimited), what is left, and
    labels applied to frames."""
    lim, used = totals.budget.get("limit"), totals.budget.get("spent", 0)
    return {"limit": lim, "spent": used, "left": None if lim is None else max(0, lim - used),
            "labels_applied": totals.stats.get("labels_applied", 0)}  # fmt: skip


def frames(totals: StateTotals) -> dict[str, int]:
    """Frames open now, opened and finalised since the start, dead letters."""
    return {"open": totals.n_open, "opened": totals.stats.get("frames_opened", 0),
            "finalised": totals.stats.get("frames_finalised", 0),
            "dead_letters": totals.n_dead}  # fmt: skip


def sources(client: redis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Per source: frames open now, opened and finalised since the start, and labels spent
    where sources have shares of the budget (``aggregator.budget_per_source``; sorted by id);
    on a Redis Cluster summed over the shards' copies."""
    shards = keys.state_shards()
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.hgetall(shard.stats)
        pipe.zrange(shard.open_frames, 0, -1)
        pipe.hgetall(shard.budget)
    replies = pipe.execute()
    rows: dict[str, dict[str, Any]] = {}

    def row(sid: str) -> dict[str, Any]:
        return rows.setdefault(sid, {"source": sid, "open": 0, "opened": 0, "finalised": 0})

    for i in range(len(shards)):
        stats, open_ids, budget_fields = replies[3 * i : 3 * i + 3]
        counters = [(stats, "frames_opened:", "opened"),
                    (stats, "frames_finalised:", "finalised"),
                    (budget_fields, "spent:", "spent")]  # fmt: skip
        for fields, prefix, what in counters:
            for k, v in fields.items():
                name = text(k)
                if name.startswith(prefix):
                    r = row(name[len(prefix) :])
                    r[what] = r.get(what, 0) + _int(v)
        for fid in open_ids:
            row(source_of(text(fid)))["open"] += 1
    return [rows[sid] for sid in sorted(rows)]


def dashboard(
    client: redis.Redis,
    keys: Keys,
    backends: Mapping[str, str] | None = None,
    live_seconds: float = 5.0,
    now: float | None = None,
    minutes: int = WINDOW_MINUTES,
) -> dict[str, Any]:
    """Every figure of the /admin page, as plain JSON values (read only: the caller records
    samples with :func:`record_sample`)."""
    now = time.time() if now is None else now
    starts = minute_starts(now, minutes)
    entries = recent_finals(client, keys)
    totals = state_totals(client, keys)  # once per refresh: every counter below comes from it
    return {
        "now": now,
        "frames": frames(totals),
        "budget": budget(totals),
        "per_minute": per_minute(read_samples(client, keys, starts[0]), now, minutes),
        "labels_per_frame": labels_per_frame(entries, now, minutes),
        "labelers": labeler_rows(client, keys, backends or {}, live_seconds, now, totals.stats),
        "thumbnails": thumbnails(client, entries),
        "sources": sources(client, keys),
    }
