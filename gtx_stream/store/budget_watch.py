"""Whether a cluster shard's periodic look for a give-back (:meth:`ShardBudget.tend
<gtx_stream.store.budget_lease.ShardBudget.tend>`) has anything to do, found out from what is
read anyway: so that an idle aggregator pays nothing for it while the budget is unlimited, and
about one command a look period for all its shards while the pool is far from low.

A look gives back (``give_back_budget.lua``) only what a shard holds of a limited pool (its
budget hash has ``limit``, or ``limit:<source>`` under source shares) where the pool has less
than a frame's reserve left, or where the shard has no open frame, and takes back
(``return_budget.lua``) what the pool is behind the shard's ``returned`` (a crash between the
halves). :func:`worth_a_look` decides that from

- the shard's budget hash as the sweep of the same step read it (the sweeper's
  :meth:`~gtx_stream.pipeline.aggregate.sweeper.Sweeper.watched`), or one HGETALL when there
  was none lately: no ``limit`` field, nothing to do, and the pool is never read;
- the pool's fields through one :class:`PoolWatch` for all the shards an aggregator process
  owns: one HMGET at most every look period, whichever shard asks first;
- whether the shard has an open frame, read (ZCARD) only when it holds something of a pool
  that is far from low, and then kept until frames of the shard end in this aggregator.

None of this decides what is given back, nor how much: the full look
(:meth:`ShardBudget.give_back <gtx_stream.store.budget_lease.ShardBudget.give_back>`) reads
everything afresh and its scripts decide atomically, as before. What comes from older reads
(up to two look periods for the shard's hash, one for the pool's fields) can only put a look
off to the next period, never make one overspend; and while a pool is low, finalised frames
still have the full look run at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping

import redis

from gtx_stream.core.records import text
from gtx_stream.store.keys import Keys

GIVE_BACK_SECONDS = 1.0
"""How often a shard's aggregator looks whether it holds more than its open frames keep while a
pool runs low, or anything with no frame open (also at once when it finalised frames while a
pool was low): :meth:`ShardBudget.tend <gtx_stream.store.budget_lease.ShardBudget.tend>`."""
SEEN_SECONDS = 2 * GIVE_BACK_SECONDS
"""How old the sweep's read of a shard's budget hash may be for a look to go by it (a sweep is
once per ``aggregator.sweep_seconds``, 1 s by default; longer, a look reads the hash itself)."""


KEEP_PERIODS = 10
"""A field no shard asked for in this many look periods leaves the periodic read (a shard handed
over, a source gone); one asked for again is read at once, with the others."""


class PoolWatch:
    """The budget pool's fields as the shards of one process last read them: one HMGET, of every
    field asked for in the last ``KEEP_PERIODS`` periods, at most every ``period`` seconds,
    whichever shard asks first; a field not read yet (a shard's first look) is read at once,
    with the others. So a value is at most a period old, and the reads are one a period
    however far apart a shard's looks fall (on a loaded machine a round of 16 shards' looks
    can take longer than two periods)."""

    def __init__(self, client: redis.Redis, keys: Keys, period: float = GIVE_BACK_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.r = client
        self.key = keys.budget_pool
        self.period = period
        self.clock = clock
        self._values: dict[str, str | None] = {}
        self._read_at = -float("inf")
        self._asked_at: dict[str, float] = {}
        """Each field's last ask."""

    def fields(self, names: Collection[str]) -> dict[str, str | None]:
        now = self.clock()
        self._asked_at.update(dict.fromkeys(names, now))
        if now - self._read_at >= self.period or not self._values.keys() >= set(names):
            keep = KEEP_PERIODS * self.period
            self._asked_at = {f: t for f, t in self._asked_at.items() if now - t <= keep}
            self._read(sorted(self._asked_at), now)
        return {f: self._values[f] for f in names}

    def _read(self, wanted: list[str], now: float) -> None:
        raw = self.r.hmget(self.key, wanted)
        self._values = {f: None if v is None else text(v) for f, v in zip(wanted, raw, strict=True)}
        self._read_at = now


def budget_field(name: str, what: str, shard: int | None = None) -> str:
    """A budget hash's field of the budget (``what`` '') or of a source's share: ``limit``,
    ``limit:<source>``; with ``shard``, the pool's ``returned:<shard>[:<source>]``."""
    head = name if shard is None else f"{name}:{shard}"
    return f"{head}:{what}" if what else head


def worth_a_look(
    held: Mapping[str, str], pool: PoolWatch, shard: int, share: int, reserve: int,
    has_open: Callable[[], bool],
) -> bool:  # fmt: skip
    """Whether the full give-back may give or take back anything now, from ``held`` (the
    shard's budget hash), the ``pool``'s fields, and ``has_open`` (whether the shard has an
    open frame; asked last, and only when that decides it). ``share``:
    ``aggregator.budget_per_source`` (0: sources are not limited)."""
    sources = [f[6:] for f in held if f.startswith("limit:")] if share > 0 else []
    limited = [w for w in ("", *sources) if budget_field("limit", w) in held]
    holds = {w: int(held[budget_field("limit", w)]) - int(held.get(budget_field("spent", w)) or 0)
             for w in limited}  # fmt: skip
    returned = {w: int(held.get(budget_field("returned", w)) or 0) for w in limited}
    if not any(h > 0 for h in holds.values()) and not any(returned.values()):
        return False  # nothing held, nothing ever given back: unlimited, or all spent
    names = ["limit", "spent"] if "" in limited else []
    names += [f"spent:{src}" for src in sources]
    names += [budget_field("returned", w, shard) for w in limited]
    got = pool.fields(names)
    if any(returned[w] > int(got[budget_field("returned", w, shard)] or 0) for w in limited):
        return True  # the pool is behind what the shard gave back: the full look takes it
    left: dict[str, int] = {}  # of each limited pool the shard holds something of
    for w in limited:
        if w and holds[w] > 0:
            left[w] = share - int(got[f"spent:{w}"] or 0)
        elif holds[w] > 0 and got["limit"] is not None:
            left[w] = int(got["limit"]) - int(got["spent"] or 0)
    if any(n < reserve for n in left.values()):
        return True  # a pool runs low: what the shard holds beyond its frames' reserve goes
    return bool(left) and not has_open()  # plenty left: all of it goes only with no frame open
