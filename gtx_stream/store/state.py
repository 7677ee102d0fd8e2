"""The scripts' state of a pipeline summed over its copies: one on a Redis, one per shard on a
Redis Cluster (:meth:`gtx_stream.store.keys.Keys.state_shards`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis

from gtx_stream.core.records import text
from gtx_stream.store.keys import Keys


@dataclass
class StateTotals:
    n_open: int = 0
    oldest: float | None = None
    """opened_at of the oldest open frame (None: none open)."""
    last_progress: float = 0.0
    """The latest ``last_progress_at`` stamp of any shard (0: none)."""
    stats: dict[str, int] = field(default_factory=dict)
    budget: dict[str, int] = field(default_factory=dict)
    """``limit`` (absent: unlimited) and ``spent``; on a cluster the pool's limit and what
    the shards spent (not what they leased)."""
    load: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    backoff: dict[str, float] = field(default_factory=dict)
    """labeler -> the latest backoff deadline of any shard."""
    n_final: int = 0
    n_dead: int = 0


def _add(into: dict[str, int], raw: dict[bytes | str, bytes | str]) -> None:
    for k, v in raw.items():
        into[text(k)] = into.get(text(k), 0) + int(v)


def state_totals(client: redis.Redis, keys: Keys) -> StateTotals:
    """Open frames, counters, budget, load, failures and backoff, and the final and dead
    streams' lengths, over every copy of the state, in one pipelined round trip (on a Redis
    Cluster the counters include the gold book's, :attr:`Keys.gold_stats`)."""
    shards = keys.state_shards()
    pipe = client.pipeline(transaction=False)
    for shard in shards:
        pipe.zcard(shard.open_frames)
        pipe.zrange(shard.open_frames, 0, 0, withscores=True)
        pipe.hgetall(shard.stats)
        pipe.hgetall(shard.budget)
        pipe.hgetall(shard.load)
        pipe.hgetall(shard.failures)
        pipe.hgetall(shard.backoff)
        pipe.xlen(shard.final)
        pipe.xlen(shard.dead)
    if keys.cluster:
        pipe.hget(keys.budget_pool, "limit")
        pipe.hgetall(keys.gold_stats)  # the gold book's counters, in the registry's slot
    replies = pipe.execute()
    out = StateTotals()
    for i in range(len(shards)):
        n_open, oldest, stats, budget, load, failures, backoff, n_final, n_dead = replies[
            9 * i : 9 * i + 9
        ]
        out.n_open += n_open
        if oldest and (out.oldest is None or oldest[0][1] < out.oldest):
            out.oldest = float(oldest[0][1])
        stamp = stats.pop(b"last_progress_at", stats.pop("last_progress_at", None))
        out.last_progress = max(out.last_progress, float(stamp or 0))
        _add(out.stats, stats)
        _add(out.budget, {k: v for k, v in budget.items() if not text(k).startswith("leased:")})
        _add(out.load, load)
        _add(out.failures, failures)
        for k, v in backoff.items():
            out.backoff[text(k)] = max(out.backoff.get(text(k), 0.0), float(v))
        out.n_final += n_final
        out.n_dead += n_dead
    if keys.cluster:  # the shards' limits are their leases; the budget's limit is the pool's
        limit, gold = replies[-2:]
        _add(out.stats, gold)
        out.budget.pop("limit", None)
        if limit is not None:
            out.budget["limit"] = int(limit)
    return out
