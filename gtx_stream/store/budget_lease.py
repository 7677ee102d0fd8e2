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
"""

from __future__ import annotations

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


def credit_call(shard_keys: Keys, leased: int) -> ScriptCall[int]:
    """Raise the shard's budget limit to ``leased`` (never lowers it)."""
    return ScriptCall("credit_budget", (shard_keys.budget,), (int(leased),), int)


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
    """One shard's side of the pool: what it may still spend, and leases when it runs short."""

    def __init__(self, client: redis.Redis, shard_keys: Keys, runner: ScriptRunner,
                 chunk: int) -> None:  # fmt: skip
        self.r = client
        self.keys = shard_keys
        self.shard = _shard_number(shard_keys)
        self.runner = runner
        self.chunk = max(1, chunk)

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


def lease_for_open(client: redis.Redis, shard: Keys, runner: ScriptRunner, reserve: int) -> int:
    """Labels leased to ``shard`` so that a frame that ``open_frame.lua`` refused ("budget",
    "full") may open: what keeps ``reserve`` labels for each of its open frames, this one
    included (0: none; the pool is spent, or the shard's budget was not what refused it)."""
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
