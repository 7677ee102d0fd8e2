"""The label budget on a Redis Cluster: a global pool that shards lease chunks of, and give
back what they no longer need.

On one Redis the budget is one hash that every script spends from. On a cluster a script
touches one slot, so each shard spends from a budget hash of its own (``<prefix>:{s<k>}:budget``,
the same fields ``limit`` and ``spent``), whose ``limit`` is what the pool (``<prefix>:budget``)
leased it, less what it gave back: ``lease_budget.lua`` takes a chunk from the pool (never more
than it has left), then ``credit_budget.lua`` raises the shard's limit to its leased total less
its ``returned``. A crash between the two calls leaves the chunk leased but not credited: the
shard's next credit raises it to the total, nothing is lost.

A lease takes up to a chunk (:data:`CHUNK_FRAMES` frames' worth of kappa labels) but no more
than a shard's share of what the pool has left, so leases shrink to what is needed as the pool
runs low. What a shard holds beyond ``reserve`` (kappa) labels per open frame, the reserve that
``open_frame.lua`` keeps for each, goes back to the pool (:meth:`ShardBudget.give_back`) when
the pool has less than a frame's reserve left, or when the shard has no open frame: its
aggregator looks every :data:`GIVE_BACK_SECONDS` and after finalising frames
(:meth:`ShardBudget.tend`; a look reads only what could change what it does, so it costs
nothing while the budget is unlimited and little while the pool is far from low:
:mod:`~gtx_stream.store.budget_watch`), and an ingester whose lease came short has every
other shard give back first (:func:`reclaim`). A give-back has two halves, each atomic in its
own slot:

1. ``give_back_budget.lua`` on the shard lowers its ``limit`` and raises its ``returned`` by
   what it gives, in one step: the shard can no longer spend it, and no later credit restores
   it (the limit is set to leased - returned);
2. ``return_budget.lua`` on the pool takes the shard's ``returned`` total: what exceeds the
   pool's ``returned:<shard>`` comes off the pool's ``spent`` (leased out, net), and
   ``returned:<shard>`` becomes the total. Idempotent, by totals.

So the pool's ``spent`` is never below what the shards may still spend plus what they spent,
and the budget is never overspent, whatever runs twice, out of order, or concurrently (two
aggregators on one shard, an ingester reclaiming): each shard never spends more than its limit
(``ask.lua``), the limits never add up to more than the pool's ``spent``, nor that to more than
its ``limit``. A crash between the halves loses the labels given back until that shard's next
give-back, whose total takes them back then; it never overspends.

When the budget left is all kept for open frames of other shards, a frame refused "budget" is
told "full" instead (:func:`budget_held`, in the ingester's ``open_frame``): the ingester waits
for what those frames leave, as on one Redis, and a run spends its whole budget.

Sources' shares of the budget (``aggregator.budget_per_source``) are leased and given back the
same way, one pool per source in the same hash (``spent:<source>``, ``leased:<shard>:<source>``,
``returned:<shard>:<source>``, ``lease_source_budget.lua``), credited to the shard's
``limit:<source>`` (less its ``returned:<source>``), which ``ask.lua`` and ``open_frame.lua``
hold the shard's ``spent:<source>`` under: a source never spends more than its share over all
shards. A shard keeps ``reserve`` labels of a source per open frame of that source.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from gtx_stream.core.records import text
from gtx_stream.store.budget_watch import (
    GIVE_BACK_SECONDS,
    SEEN_SECONDS,
    PoolWatch,
    budget_field,
    worth_a_look,
)
from gtx_stream.store.frame_scripts import budget_left
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptCall, ScriptRunner

CHUNK_FRAMES = 4
"""A lease takes at least this many frames' worth (kappa labels each) at once."""


def _pair(reply: Any) -> tuple[int, int]:
    return int(reply[0]), int(reply[1])


def _pairs(reply: Any) -> list[tuple[int, int]]:
    return [(int(reply[i]), int(reply[i + 1])) for i in range(0, len(reply), 2)]


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
    ``leased`` less what the shard gave back of it (never lowers it)."""
    return ScriptCall("credit_budget", (shard_keys.budget,), (int(leased), field), int)


def give_back_call(
    shard_keys: Keys, reserve: int, what: Sequence[str]
) -> ScriptCall[list[tuple[int, int]]]:
    """The shard's half of a give-back: for each of ``what`` ('' the budget, or a source id),
    what the shard holds beyond ``reserve`` labels per open frame (of that source) leaves its
    limit: (given, the shard's returned total) each."""
    keys = (shard_keys.budget, shard_keys.open_frames)
    return ScriptCall("give_back_budget", keys, (int(reserve), *what), _pairs)


def return_call(keys: Keys, shard: int, totals: Mapping[str, int]) -> ScriptCall[int]:
    """The pool's half: take back what ``shard`` gave back, given its returned ``totals`` ('' the
    budget, or a source id -> total); idempotent. The labels taken back."""
    args = [x for what, n in sorted(totals.items()) for x in (what, int(n))]
    return ScriptCall("return_budget", (keys.budget_pool,), (shard, *args), int)


def _shard_number(keys: Keys) -> int:
    return 0 if keys.shard is None else keys.shard


def set_limit(client: redis.Redis, keys: Keys, limit: int) -> None:
    """The budget limit (0: unlimited): on one Redis the budget hash's ``limit``; on a cluster
    the pool's, and every shard's own limit set to what it leased less what it gave back
    (absent: unlimited)."""
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
    """One shard's side of the pool: what it may still spend, leases when it runs short (of the
    budget, and of each source's ``share`` where sources have one), and gives back what it
    holds beyond ``reserve`` labels per open frame once a pool runs low, or all of it with no
    frame open (:meth:`tend`)."""

    def __init__(self, client: redis.Redis, shard_keys: Keys, runner: ScriptRunner,
                 chunk: int, share: int = 0, reserve: int = 1,
                 pool: PoolWatch | None = None) -> None:  # fmt: skip
        """``pool``: the pool's fields as this process's shards read them for their looks
        (one :class:`PoolWatch` for every shard an aggregator owns; default, one of its own)."""
        self.r = client
        self.keys = shard_keys
        self.shard = _shard_number(shard_keys)
        self.runner = runner
        self.chunk = max(1, chunk)
        self.share = share
        self.reserve = max(1, reserve)
        self.pool = pool or PoolWatch(client, shard_keys)
        self.low = False
        """A pool was below ``reserve`` (a frame's worth) at the last look: after finalising
        frames, look again at once."""
        self._looked = 0.0
        self._full = False  # the first look is a full one: it repairs what a crash left
        self._open: bool | None = None
        """Whether the shard had an open frame when last read (None: not read since frames of
        it ended)."""

    def combined(self, shard_left: int | None) -> int | None:
        """What this shard may still spend, its own left plus the pool's (None: unlimited)."""
        if shard_left is None:
            return None
        pool = max(0, pool_left(self.r, self.keys) or 0)
        self.low = self.low or pool < self.reserve
        return shard_left + pool

    def tend(
        self, finalised: bool = False, seen: Mapping[str, str] | None = None,
        seen_at: float = -float("inf"),
    ) -> int:  # fmt: skip
        """Every :data:`GIVE_BACK_SECONDS`, and at once after frames of the shard ended
        (``finalised``: finalised or dropped) while a pool was low: :meth:`give_back`; the
        periodic looks after the first only where it has anything to do
        (:func:`~gtx_stream.store.budget_watch.worth_a_look`). ``seen``: the shard's budget
        hash as the last sweep read it, at ``seen_at`` (``time.monotonic()``); used while at
        most :data:`~gtx_stream.store.budget_watch.SEEN_SECONDS` old, else read. Nothing with
        one shard (no other shard could use it)."""
        now = time.monotonic()
        if self.keys.shards <= 1:
            return 0
        if finalised:
            self._open = None
            if self.low:
                self._looked = now
                return self.give_back()
        if now - self._looked < GIVE_BACK_SECONDS:
            return 0
        self._looked = now
        if self._full:
            if seen is None or now - seen_at > SEEN_SECONDS:
                seen = {text(f): text(v) for f, v in self.r.hgetall(self.keys.budget).items()}
            if not worth_a_look(seen, self.pool, self.shard, self.share, self.reserve,
                                self._has_open):  # fmt: skip
                return 0
        return self.give_back()

    def _has_open(self) -> bool:
        if self._open is None:
            self._open = int(self.r.zcard(self.keys.open_frames)) > 0
        return self._open

    def give_back(self) -> int:
        """Give back to the pool what the shard holds beyond ``reserve`` labels per open frame
        (of each source) where the pool (the budget, a source's share) has less than
        ``reserve`` left: another shard may need it, and leases from a pool that low take only
        what is needed, so it does not come straight back. All of it, of every pool, when the
        shard has no open frame. Two halves: ``give_back_budget.lua`` on the shard, then
        ``return_budget.lua`` on the pool with the shard's returned totals, which also takes
        back what a crash between the halves left out. The labels given back."""
        k = self.shard
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.keys.budget)
        pipe.zcard(self.keys.open_frames)
        pipe.hmget(self.keys.budget_pool, ["limit", "spent", f"returned:{k}"])
        raw_held, n_open, (limit, spent, taken) = pipe.execute()
        self._full, self._open = True, n_open > 0
        held = {text(f): int(v) for f, v in raw_held.items()}
        sources = sorted(f[6:] for f in held if f.startswith("limit:"))
        left = {"": None if limit is None else int(limit) - int(spent or 0)}
        pool_taken = {"": int(taken or 0)}
        if sources:
            fields = [f for src in sources for f in (f"spent:{src}", f"returned:{k}:{src}")]
            raw = self.r.hmget(self.keys.budget_pool, fields)
            for i, src in enumerate(sources):
                left[src] = self.share - int(raw[2 * i] or 0) if self.share > 0 else None
                pool_taken[src] = int(raw[2 * i + 1] or 0)
        limited = {w: n for w, n in left.items() if n is not None}
        holds = {w: held.get(budget_field("limit", w), 0) - held.get(budget_field("spent", w), 0)
                 for w in limited}  # fmt: skip
        low = {w for w, n in limited.items() if n < self.reserve}
        what = [w for w, h in holds.items() if h > 0 and (w in low or not n_open)]
        before = {w: held.get(budget_field("returned", w), 0) for w in left}
        totals = dict(before)
        if what:
            replies = self.runner.run_one(give_back_call(self.keys, self.reserve, what))
            totals.update({w: total for w, (_, total) in zip(what, replies, strict=True)})
        given = {w: totals[w] - before[w] for w in totals}
        # what it still holds of a low pool, kept for open frames, comes back as they end
        self.low = any(holds[w] - given[w] > 0 for w in low)
        behind = {w: n for w, n in totals.items() if n > pool_taken[w]}
        if behind:
            self.runner.run_one(return_call(self.keys, k, behind))
        return sum(given.values())

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
        raw = self.r.hmget(self.keys.budget_pool, [f"spent:{src}" for src in sources])
        pooled = [max(0, self.share - int(p or 0)) for p in raw]
        self.low = self.low or any(p < self.reserve for p in pooled)
        return {src: max(0, h) + p
                for src, h, p in zip(sources, self.held(sources), pooled, strict=True)}  # fmt: skip


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
            got = chunk.lease_source(source_id, reserve)
            if got <= 0 and reclaim(runner, shard, reserve, source_id) > 0:
                got = chunk.lease_source(source_id, reserve)
            granted += got
    return granted + _lease_budget_for_open(client, shard, runner, reserve)


def budget_held(client: redis.Redis, keys: Keys, source_id: str = "", share: int = 0) -> bool:
    """Whether a frame of ``source_id`` refused "budget" on a cluster's shard may still open
    later: some of the budget (when limited) and of the source's ``share`` (when it has one)
    is held, by the pool or by a shard (for its open frames, after :func:`lease_for_open`'s
    :func:`reclaim`), and what those frames leave comes back (:meth:`ShardBudget.tend`). On
    one Redis the same state is "full": the ingester waits instead of stopping."""
    fields = ["limit", "spent", f"limit:{source_id}", f"spent:{source_id}"]
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.budget_pool, ["limit", "spent", f"spent:{source_id}"])
    for shard in keys.every_shard():
        pipe.hmget(shard.budget, fields)
    (limit, spent, source_spent), *shards = pipe.execute()
    budget = sum(max(0, int(b[0] or 0) - int(b[1] or 0)) for b in shards)
    source = sum(max(0, int(b[2] or 0) - int(b[3] or 0)) for b in shards)
    return (limit is None or int(limit) - int(spent or 0) + budget > 0) and (
        share <= 0 or share - int(source_spent or 0) + source > 0
    )


def reclaim(runner: ScriptRunner, shard: Keys, reserve: int, what: str) -> int:
    """Have every shard but ``shard`` give back what it holds of ``what`` ('' the budget, or a
    source id) beyond ``reserve`` labels per open frame (of that source), both halves, as
    :meth:`ShardBudget.give_back` does for its own (each half is atomic in its slot, so any
    process may): the labels the pool took back. For a lease that came short."""
    others = [s for s in shard.every_shard() if s.shard != shard.shard]
    replies = runner.run([give_back_call(s, reserve, [what]) for s in others])
    calls = [return_call(s, _shard_number(s), {what: total})
             for s, [(given, total)] in zip(others, replies, strict=True) if given > 0]  # fmt: skip
    return sum(runner.run(calls)) if calls else 0


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
    granted = chunk.lease(needed)
    if 0 <= granted < needed and reclaim(runner, shard, reserve, "") > 0:
        granted += max(0, chunk.lease(needed - granted))
    return max(0, granted)
