"""The label budget on a Redis Cluster: a global pool that shards lease chunks of.

On one Redis the budget is one hash that every script spends from. On a cluster a script
touches one slot, so each shard spends from a budget hash of its own (``<prefix>:{s<k>}:budget``,
the same fields ``limit`` and ``spent``), whose ``limit`` is what the pool (``<prefix>:budget``)
leased it: ``lease_budget.lua`` takes a chunk from the pool (never more than it has left), then
``credit_budget.lua`` raises the shard's limit to its leased total. The shards' limits never
add up to more than the pool's, and each shard never spends more than its limit (``ask.lua``),
so the budget is never overspent. A crash between the two calls leaves the chunk leased but not
credited: the shard's next credit raises it to the total, nothing is lost.

What a shard leased and did not spend stays with it. A lease takes up to a chunk
(:data:`CHUNK_FRAMES` frames' worth of kappa labels) but no more than a shard's share of what
the pool has left, so leases shrink to what is needed as the pool runs low, and what stays
stranded at the budget's end is what shards leased for frames that then needed fewer labels.

Sources' shares of the budget (``aggregator.budget_per_source``) are leased the same way, one
pool per source in the same hash (``spent:<source>``, ``leased:<shard>:<source>``,
``lease_source_budget.lua``), credited to the shard's ``limit:<source>``, which ``ask.lua``
and ``open_frame.lua`` hold the shard's ``spent:<source>`` under: a source never spends more
than its share over all shards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from gtx_stream.store.frame_scripts import budget_left
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptCall, ScriptRunner

CHUNK_FRAMES = 4
"""A lease takes at least this many frames' worth (kappa labels each) at once."""


def _pair(reply: Any) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def lease_call(keys: Keys, shard: int, needed: int, chunk: int = 1) -> ScriptCall[tuple[int, int]]:
    """Lease ``shard`` what it needs, or more: up to ``chunk``, but no more than a shard's
    share of what the pool has left: (granted, shard's leased total), granted -1 when the
    budget is unlimited (never more than is left)."""
    args = (shard, int(needed), int(chunk), keys.shards)
    return ScriptCall("lease_budget", (keys.budget_pool,), args, _pair)


def source_lease_call(
    keys: Keys, shard: int, source: str, needed: int, chunk: int, share: int
) -> ScriptCall[tuple[int, int]]:
    """Lease ``shard`` labels of ``source``'s ``share``, as :func:`lease_call` does of the
    budget: (granted, the shard's leased total of the source)."""
    args = (shard, source, int(needed), int(chunk), keys.shards, int(share))
    return ScriptCall("lease_source_budget", (keys.budget_pool,), args, _pair)


def credit_call(shard_keys: Keys, leased: int, field: str = "limit") -> ScriptCall[int]:
    """Raise the shard's budget ``field`` (``limit``, or a source's ``limit:<source>``) to
    ``leased`` (never lowers it)."""
    return ScriptCall("credit_budget", (shard_keys.budget,), (int(leased), field), int)


def _shard_number(keys: Keys) -> int:
    return 0 if keys.shard is None else keys.shard


def set_limit(client: redis.Redis, keys: Keys, limit: int) -> None:
    """The budget limit (0: unlimited): on one Redis the budget hash's ``limit``; on a cluster
    the pool's, and every shard's own limit set to what it leased (absent: unlimited)."""
    if not keys.cluster:
        if limit > 0:
            client.hset(keys.budget, "limit", limit)
        else:
            client.hdel(keys.budget, "limit")
        return
    runner = ScriptRunner(client)
    if limit <= 0:
        client.hdel(keys.budget_pool, "limit")
        for shard in keys.every_shard():
            client.hdel(shard.budget, "limit")
        return
    client.hset(keys.budget_pool, "limit", limit)
    leased = client.hmget(keys.budget_pool, [f"leased:{k}" for k in range(keys.shards)])
    runner.run([credit_call(shard, int(n or 0))
                for shard, n in zip(keys.every_shard(), leased, strict=True)])  # fmt: skip


def pool_left(client: redis.Redis, keys: Keys) -> int | None:
    """Labels the pool has not leased out yet (None: unlimited)."""
    return budget_left(*client.hmget(keys.budget_pool, ["limit", "spent"]))


class ShardBudget:
    """One shard's side of the pool: what it may still spend, and leases when it runs short
    (of the budget, and of each source's ``share`` where sources have one)."""

    def __init__(self, client: redis.Redis, shard_keys: Keys, runner: ScriptRunner,
                 chunk: int, share: int = 0) -> None:  # fmt: skip
        self.r = client
        self.keys = shard_keys
        self.shard = _shard_number(shard_keys)
        self.runner = runner
        self.chunk = max(1, chunk)
        self.share = share

    def combined(self, shard_left: int | None) -> int | None:
        """What this shard may still spend, its own left plus the pool's (None: unlimited)."""
        if shard_left is None:
            return None
        pool = pool_left(self.r, self.keys)
        return shard_left + max(0, pool or 0)

    def lease(self, needed: int) -> int:
        """Lease ``needed`` labels, or up to a chunk while the pool has plenty
        (:func:`lease_call`), and credit them; the labels granted (0: the pool is spent; -1:
        unlimited)."""
        granted, leased = self.runner.run_one(
            lease_call(self.keys, self.shard, needed, self.chunk))  # fmt: skip
        if granted >= 0:
            self.runner.run_one(credit_call(self.keys, leased))
        return granted

    def cover(self, needed: int) -> None:
        """Make sure the shard holds ``needed`` labels of budget, leasing what it lacks (what
        the pool cannot give, ``ask.lua`` refuses as ``budget``)."""
        if needed <= 0:
            return
        left = budget_left(*self.r.hmget(self.keys.budget, ["limit", "spent"]))
        if left is not None and left < needed:
            self.lease(needed - left)

    def held(self, sources: Sequence[str]) -> list[int]:
        """What the shard holds of each source's lease and has not spent."""
        fields = [f for src in sources for f in (f"limit:{src}", f"spent:{src}")]
        raw = self.r.hmget(self.keys.budget, fields)
        return [int(raw[2 * i] or 0) - int(raw[2 * i + 1] or 0) for i in range(len(sources))]

    def cover_sources(self, needed: Mapping[str, int]) -> None:
        """Make sure the shard holds ``needed[source]`` labels of each source's share, leasing
        what it lacks (what the source's pool cannot give, ``ask.lua`` refuses as
        ``source_budget``). Nothing without shares."""
        wanted = sorted(src for src, n in needed.items() if n > 0)
        if self.share <= 0 or not wanted:
            return
        for src, held in zip(wanted, self.held(wanted), strict=True):
            if held < needed[src]:
                self.lease_source(src, needed[src] - held)

    def lease_source(self, source: str, needed: int) -> int:
        """Lease ``needed`` labels of ``source``'s share, or up to a chunk, and credit them;
        the labels granted (0: the source's share is spent)."""
        granted, leased = self.runner.run_one(
            source_lease_call(self.keys, self.shard, source, needed, self.chunk, self.share)
        )
        if granted > 0:
            self.runner.run_one(credit_call(self.keys, leased, f"limit:{source}"))
        return granted

    def sources_left(self, sources: Sequence[str]) -> dict[str, int]:
        """Labels each source may still spend here: what the shard holds of its lease, plus
        what its pool has not leased out."""
        pooled = self.r.hmget(self.keys.budget_pool, [f"spent:{src}" for src in sources])
        held = self.held(sources)
        return {src: max(0, h) + max(0, self.share - int(p or 0))
                for src, h, p in zip(sources, held, pooled, strict=True)}  # fmt: skip


def lease_for_open(
    client: redis.Redis, shard: Keys, runner: ScriptRunner, reserve: int,
    source_id: str = "", share: int = 0,
) -> int:  # fmt: skip
    """Labels leased to ``shard`` so that a frame that ``open_frame.lua`` refused ("budget",
    "full") may open: what keeps ``reserve`` labels for each of its open frames, this one
    included, and with a source ``share`` a chunk of ``source_id``'s share when the shard holds
    none of it (0: none; the pools are spent, or neither budget was what refused it)."""
    granted = 0
    if share > 0:
        chunk = ShardBudget(client, shard, runner, CHUNK_FRAMES * reserve, share)
        if chunk.held([source_id])[0] <= 0:
            granted += chunk.lease_source(source_id, reserve)
    return granted + _lease_budget_for_open(client, shard, runner, reserve)


def _lease_budget_for_open(client: redis.Redis, shard: Keys, runner: ScriptRunner,
                           reserve: int) -> int:  # fmt: skip
    pipe = client.pipeline(transaction=False)
    pipe.hmget(shard.budget, ["limit", "spent"])
    pipe.zcard(shard.open_frames)
    (limit, spent), n_open = pipe.execute()
    left = budget_left(limit, spent)
    if left is None:
        return 0
    needed = max(1, (n_open + 1) * reserve) - left
    if needed <= 0:
        return 0  # full for another reason (max_open_frames): leasing would not help
    chunk = ShardBudget(client, shard, runner, CHUNK_FRAMES * reserve)
    return max(0, chunk.lease(needed))
