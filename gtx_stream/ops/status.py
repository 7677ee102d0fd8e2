"""What a running pipeline is doing, read from Redis alone (``gtx-stream status``)."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from gtx_stream.core.records import text
from gtx_stream.ops.metrics import sources as metrics_sources
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import owners as shard_owners
from gtx_stream.store.shards import stored_keys
from gtx_stream.store.state import state_totals


def pipeline_status(
    client: redis.Redis,
    keys: Keys,
    live_seconds: float = 5.0,
    export_group: str = "exporter",
    qualification: int = 10,
    queue: redis.Redis | None = None,
) -> dict[str, Any]:
    """Frames open and finalised, labels spent and budget left, queues, per-labeler figures
    (failed requests, failures in a row, seconds of backoff left), the exporter (images
    exported and missing, how far its group is behind on the final stream), and gold: items
    loaded, answers (assessment, apart from the budget), each person's gold record (qualified
    once they have ``qualification`` answers) and who is paused and why. With several shards,
    each shard's owner (None: unowned) and the sharded aggregators alive. Queue lengths are
    read from ``queue`` (``redis.queue_url``'s Redis; default ``client``)."""
    keys = stored_keys(client, keys)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.labelers)
    pipe.zrange(keys.live, 0, -1, withscores=True)
    pipe.hgetall(keys.gold_scores)
    pipe.hgetall(keys.paused)
    for shard in keys.every_shard():
        pipe.xlen(shard.labels)
    if keys.shards > 1:
        pipe.zrange(keys.aggregators, 0, -1, withscores=True)
    labelers, live, scores, paused, *rest = pipe.execute()
    n_labels = sum(rest[: keys.shards])
    owners = [None if o is None else text(o) for o in shard_owners(client, keys)]
    beats = {text(k): float(v) for k, v in rest[keys.shards]} if keys.shards > 1 else {}
    state = state_totals(client, keys)
    n_open, oldest, last_progress = state.n_open, state.oldest, state.last_progress
    stats, budget, load, failures = state.stats, state.budget, state.load, state.failures
    backoff, n_final, n_dead = state.backoff, state.n_final, state.n_dead
    labelers = {text(k): json.loads(v) for k, v in labelers.items()}
    now = time.time()
    live_at = {text(k): float(v) for k, v in live}
    pipe = (queue if queue is not None else client).pipeline(transaction=False)
    ids = sorted(labelers)
    for lab in ids:
        pipe.llen(f"rq:queue:{keys.queue(lab)}")
    depths = pipe.execute()
    per_labeler = {}
    for lab, depth in zip(ids, depths, strict=True):
        info = labelers[lab]
        per_labeler[lab] = {
            "accuracy": info.get("accuracy"),
            "lower": info.get("lower"),
            "upper": info.get("upper"),
            "source": info.get("source"),
            # an em record: when the estimator fitted it (gtx_stream.store.em_params)
            "fitted_at": info.get("fitted_at"),
            "sensitivity": (info.get("two_coin") or {}).get("sensitivity"),
            "specificity": (info.get("two_coin") or {}).get("specificity"),
            "labels": stats.get(f"labels:{lab}", 0),
            "outstanding": load.get(lab, 0),
            "queue": depth,
            "live": now - live_at.get(lab, -1e18) <= live_seconds,
            "failed": stats.get(f"failed:{lab}", 0),
            "failures_in_a_row": failures.get(lab, 0),
            # seconds it is still not dispatched to after failing several requests in a row
            "backoff_s": round(max(0.0, backoff.get(lab, 0.0) - now), 1),
        }
    limit = budget.get("limit")
    spent = budget.get("spent", 0)
    return {
        "frames_open": n_open,
        "oldest_open_age_s": round(now - oldest, 3) if oldest is not None else None,
        "frames_opened": stats.get("frames_opened", 0),
        "frames_finalised": stats.get("frames_finalised", 0),
        "final_stream_length": n_final,
        "dead_letters": n_dead,
        "labels_stream_length": n_labels,
        "labels_applied": stats.get("labels_applied", 0),
        "requests": stats.get("requests", 0),
        "requests_failed": stats.get("requests_failed", 0),
        "leases_expired": stats.get("leases_expired", 0),
        "last_progress_at": last_progress or None,
        "budget_limit": limit,
        "budget_spent": spent,
        "budget_left": None if limit is None else max(0, limit - spent),
        "images_exported": stats.get("images_exported", 0),
        "images_missing": stats.get("images_missing", 0),
        "images_filtered": stats.get("images_filtered", 0),
        "exporter": exporter_status(client, keys, export_group),
        "labelers": per_labeler,
        "shards": keys.shards,
        "shard_owners": owners,
        "aggregators": {name: round(now - at, 1) for name, at in sorted(beats.items())},
        "sources": metrics_sources(client, keys),
        **gold_status(stats, scores, paused, qualification),
    }


def gold_status(
    stats: dict[str, int], scores: dict[Any, Any], paused: dict[Any, Any], qualification: int
) -> dict[str, Any]:
    """Gold items and answers, each person's gold record and gold items left to them, the
    paused people with why, and who is not paused but has answered every gold item
    (``gold_used_up``: gold measures them no more, or, not qualified, they get no frame)."""
    why = {text(k): json.loads(v) for k, v in paused.items()}
    items = stats.get("gold_items", 0)
    people = {}
    for k, v in sorted(scores.items()):
        person, rec = text(k), json.loads(v)
        people[person] = {
            "gold_answers": rec["total"],
            "correct": rec["correct"],
            "accuracy": rec["accuracy"],
            "lower": rec["lower"],
            "upper": rec["upper"],
            "qualified": rec["total"] >= qualification,
            "paused": why[person]["reason"] if person in why else None,
            # a person answers each item once: what they have not answered yet
            "gold_left": max(0, items - rec["total"]),
        }
    return {
        "gold_items": items,
        "gold_answers": stats.get("gold_answers", 0),
        "people": people,
        "paused": {person: rec["reason"] for person, rec in sorted(why.items())},
        "gold_used_up": [p for p, v in people.items() if _used_up(v, items)],
    }


def _used_up(person: dict[str, Any], items: int) -> bool:
    return bool(items) and not person["gold_left"] and not person["paused"]


def exporter_status(client: redis.Redis, keys: Keys, group: str) -> dict[str, Any] | None:
    """The exporter group on the final stream (None when there is none): entries not yet read
    (``lag``; None when Redis cannot tell, after a trim), read but not acknowledged
    (``pending``), and the age of the oldest entry not yet read (``behind_s``). On a Redis
    Cluster over every shard's final stream: lags and pendings summed, the oldest of all."""
    found = [s for shard in keys.state_shards()
             if (s := _exporter_on(client, shard.final, group)) is not None]  # fmt: skip
    if not found:
        return None
    lags = [s["lag"] for s in found]
    return {"group": group, "lag": None if None in lags else sum(lags),
            "pending": sum(s["pending"] for s in found),
            "behind_s": max(s["behind_s"] for s in found)}  # fmt: skip


def _exporter_on(client: redis.Redis, stream: str, group: str) -> dict[str, Any] | None:
    try:
        groups = cast(list[dict[str, Any]], client.xinfo_groups(stream))
    except redis.ResponseError as err:
        if isinstance(err, redis.exceptions.NoPermissionError) or "no such key" not in str(err):
            raise
        return None
    info = next((g for g in groups if text(g["name"]) == group), None)
    if info is None:
        return None
    last = text(info["last-delivered-id"])
    nxt = cast(list[Any], client.xrange(stream, min=f"({last}", count=1))
    behind = time.time() - int(text(nxt[0][0]).split("-")[0]) / 1000 if nxt else 0.0
    return {
        "lag": info.get("lag"),
        "pending": int(info["pending"]),
        "behind_s": round(max(0.0, behind), 1),
    }


def exporter_warning(status: dict[str, Any], lag_seconds: float) -> str | None:
    """Why the exporter looks stuck: final entries waiting longer than ``lag_seconds``."""
    ex = status.get("exporter")
    if not ex or ex["behind_s"] <= lag_seconds:
        return None
    waiting = "?" if ex["lag"] is None else ex["lag"]
    return (f"exporter lags: {waiting} final entries not exported, the oldest "
            f"{ex['behind_s']:.0f} s old ({ex['pending']} pending); their images expire "
            f"with their TTL")  # fmt: skip


def health_problem(status: dict[str, Any], stall_seconds: float) -> str | None:
    """Why the pipeline is unhealthy (open frames and no progress for stall_seconds), or None."""
    if not status["frames_open"]:
        return None
    oldest_open_at = time.time() - (status["oldest_open_age_s"] or 0.0)
    since = max(status["last_progress_at"] or 0.0, oldest_open_at)
    idle = time.time() - since
    if idle > stall_seconds:
        return (f"stalled: {status['frames_open']} frames open and no progress for "
                f"{idle:.0f} s (limit {stall_seconds:.0f} s)")  # fmt: skip
    return None
