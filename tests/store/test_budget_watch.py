"""When a cluster shard's periodic give-back look has anything to do (store/budget_watch.py):
decided from the shard's budget hash as the sweep read it, the pool's fields read once for all
of a process's shards, and whether the shard has an open frame, each read only where it decides
the answer. Unit cases with a counting stand-in for Redis, then an idle aggregator owning 16
shards on a real local Redis Cluster (3 masters), counted with ``INFO commandstats`` and a
recorder around the shards' budget client: nothing sent while the budget is unlimited, about
one read of the pool a look period while it is far from low (before: one HGETALL, one ZCARD and
one HMGET per shard and look, 48 commands/s at 16 shards)."""

from __future__ import annotations

import collections
import time
from typing import Any, NamedTuple

import pytest
from redis.cluster import RedisCluster

from gtx_stream.config import AggregatorSettings
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.pipeline.ingest.ingester import open_frame
from gtx_stream.store import budget_lease
from gtx_stream.store.budget_lease import ShardBudget, pool_left, set_limit
from gtx_stream.store.budget_watch import (
    GIVE_BACK_SECONDS,
    KEEP_PERIODS,
    PoolWatch,
    worth_a_look,
)
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.params import LabelerAccuracy, store
from gtx_stream.store.scripts import ScriptRunner
from tests import cluster_fixtures
from tests.aggregator_harness import Capture
from tests.cluster_fixtures import LocalCluster

masters_only_cluster = cluster_fixtures.masters_only_cluster  # the fixtures
flushed_client = cluster_fixtures.flushed_client

KEYS = Keys("gtx", shards=16, cluster=True)
SHARD = 3


class FakePool:
    """The pool hash for :class:`PoolWatch`: ``hmget`` answers from ``fields`` and is counted."""

    def __init__(self, **fields: str) -> None:
        self.fields = dict(fields)
        self.reads: list[list[str]] = []

    def hmget(self, key: str, names: list[str]) -> list[str | None]:
        assert key == KEYS.budget_pool
        self.reads.append(list(names))
        return [self.fields.get(n) for n in names]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _watch(pool: FakePool, clock: Clock | None = None) -> PoolWatch:
    return PoolWatch(pool, KEYS, period=1.0, clock=clock or Clock())  # type: ignore[arg-type]


PLENTY = {"limit": "1000", "spent": "100"}
# (shard's budget hash, pool's fields, source share, has an open frame, worth a look, pool read)
CASES = {
    "unlimited: nothing to do, nothing read": ({"spent": "7"}, PLENTY, 0, True, False, False),
    "all spent, never given back": ({"limit": "10", "spent": "10"}, PLENTY, 0, True, False, False),
    "spent past a limit set later": ({"limit": "0", "spent": "9"}, PLENTY, 0, False, False, False),
    "plenty left, a frame open": ({"limit": "20", "spent": "4"}, PLENTY, 0, True, False, True),
    "plenty left, no frame open": ({"limit": "20", "spent": "4"}, PLENTY, 0, False, True, True),
    "the pool runs low": (
        {"limit": "20", "spent": "4"}, {"limit": "100", "spent": "97"}, 0, True, True, True),
    "the pool is behind the shard's returned": (
        {"limit": "10", "spent": "10", "returned": "5"}, {**PLENTY, f"returned:{SHARD}": "2"},
        0, True, True, True),
    "the pool took back all the shard returned": (
        {"limit": "10", "spent": "10", "returned": "5"}, {**PLENTY, f"returned:{SHARD}": "5"},
        0, True, False, True),
    "the pool's limit gone, the shard's not yet": (
        {"limit": "20", "spent": "4"}, {"spent": "100"}, 0, False, False, True),
    "a source's share runs low": (
        {"limit:cam": "10", "spent:cam": "2"}, {"spent:cam": "28"}, 30, True, True, True),
    "a source's share far from spent": (
        {"limit:cam": "10", "spent:cam": "2"}, {"spent:cam": "5"}, 30, True, False, True),
    "sources without a share are not limited": (
        {"limit:cam": "10", "spent:cam": "2"}, {"spent:cam": "28"}, 0, False, False, False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_look_is_worth_it_only_where_it_may_give_or_take_back(case: str) -> None:
    held, fields, share, has_open, worth, read = CASES[case]
    pool = FakePool(**fields)
    asked: list[bool] = []

    def opened() -> bool:
        asked.append(True)
        return has_open

    assert worth_a_look(held, _watch(pool), SHARD, share, 4, opened) is worth
    assert bool(pool.reads) is read
    assert len(pool.reads) <= 1


def test_the_pool_is_read_once_a_period_for_every_shard_of_the_process() -> None:
    pool, clock = FakePool(**PLENTY), Clock()
    watch = _watch(pool, clock)
    names = {k: ["limit", "spent", f"returned:{k}"] for k in range(16)}
    for k in range(16):  # the first looks: each shard's fields are added as it asks
        assert watch.fields(names[k]) == {"limit": "1000", "spent": "100", f"returned:{k}": None}
    assert len(pool.reads) == 16
    for _ in range(5):  # then one read a period, whichever shard asks first
        clock.now += 1.0
        pool.reads.clear()
        for k in [*range(8, 16), *range(8)]:
            watch.fields(names[k])
        assert pool.reads == [sorted({f for k in range(16) for f in names[k]})]
    # shards whose looks fall periods apart are kept in the one read (no read of their own),
    # and a value is never more than a period old
    pool.fields["spent"] = "990"
    clock.now += 1.0
    assert watch.fields(names[0])["spent"] == "990"
    pool.reads.clear()
    for k in range(1, 16):  # each shard looks again only a few periods later
        clock.now += 0.5
        assert watch.fields(names[k])["spent"] == "990"
    assert len(pool.reads) == 7  # one a period (7.5 s), never one for a shard's own fields
    assert all(r == sorted({f for k in range(16) for f in names[k]}) for r in pool.reads)
    # a shard that stopped looking for KEEP_PERIODS periods drops out of the read
    for _ in range(KEEP_PERIODS + 1):
        clock.now += 1.0
        watch.fields(names[0])
    pool.reads.clear()
    clock.now += 1.0
    watch.fields(names[0])
    assert pool.reads == [sorted(names[0])]


# --- an idle aggregator on a real cluster -------------------------------------------------------


class Recorder:
    """A client, pipeline or script runner whose calls are recorded: (method, its first argument
    where a string, else that argument's type name)."""

    def __init__(self, inner: Any, calls: list[tuple[str, Any]]) -> None:
        self._inner, self._calls = inner, calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name == "execute":
            return attr

        def call(*a: Any, **kw: Any) -> Any:
            first = a[0] if a else None
            self._calls.append((name, first if isinstance(first, str) else type(first).__name__))
            out = attr(*a, **kw)
            return Recorder(out, self._calls) if name == "pipeline" else out

        return call


@pytest.fixture
def rc(flushed_client: RedisCluster) -> RedisCluster:
    return flushed_client


def _commands(cluster: LocalCluster) -> collections.Counter[str]:
    total: collections.Counter[str] = collections.Counter()
    for port, _ in cluster.masters():
        with cluster.node(port) as node:
            for name, stats in node.info("commandstats").items():
                total[name.removeprefix("cmdstat_")] += int(stats["calls"])
    return total


class Idle(NamedTuple):
    served: dict[str, int]
    """Commands the masters served (INFO left out)."""
    calls: list[tuple[str, str]]
    """Calls of the shards' budget code (their ``ShardBudget``'s client and script runner)."""
    watch: list[tuple[str, str]]
    """Calls of the pool watch they share."""
    looks: int
    seconds: float


def _idle(cluster: LocalCluster, agg: ShardedAggregator, monkeypatch: pytest.MonkeyPatch) -> Idle:
    """Step ``agg`` with nothing arriving until every shard had two looks, after a
    warm-up in which it took every shard and each had its first look (a full one) and one
    more (so every shard's fields are in the pool watch)."""
    agg.step()
    assert len(agg.owned) == KEYS.shards
    began = time.monotonic()
    while time.monotonic() - began < GIVE_BACK_SECONDS:
        agg.step()
    agg.step()
    looks: collections.Counter[int] = collections.Counter()  # by shard: cheap ones, or full

    def counted(held: Any, pool: Any, shard: int, *args: Any) -> bool:
        looks[shard] += 1
        return worth_a_look(held, pool, shard, *args)

    def full(self: ShardBudget) -> int:
        looks[self.shard] += 1
        return give_back(self)

    give_back = ShardBudget.give_back
    monkeypatch.setattr(budget_lease, "worth_a_look", counted)
    monkeypatch.setattr(ShardBudget, "give_back", full)
    calls: list[tuple[str, str]] = []
    watch: list[tuple[str, str]] = []
    for shard in agg.owned.values():
        budget = shard.budget
        assert budget is not None
        budget.r, budget.runner = Recorder(budget.r, calls), Recorder(budget.runner, calls)  # type: ignore[assignment]
        if not isinstance(budget.pool.r, Recorder):  # one watch for all the shards
            budget.pool.r = Recorder(budget.pool.r, watch)  # type: ignore[assignment]
    before, began = _commands(cluster), time.monotonic()
    while len(looks) < KEYS.shards or min(looks.values()) < 2:
        agg.step()
        assert time.monotonic() - began < 60, f"looks {dict(looks)}"
    after, seconds = _commands(cluster), time.monotonic() - began
    served = {c: n - before[c] for c, n in after.items() if n > before[c] and c != "info"}
    return Idle(served, calls, watch, sum(looks.values()), seconds)


def _aggregator(rc: RedisCluster, budget: int) -> ShardedAggregator:
    agg = ShardedAggregator(rc, KEYS, AggregatorSettings(shards=KEYS.shards, budget=budget),
                            consumer="agg", enqueue=Capture())  # fmt: skip
    agg.setup()
    # registered, none live: an open frame waits (none registered: finalised "exhausted")
    store(rc, KEYS, {"ann": LabelerAccuracy.given(0.9, "config")})
    return agg


@pytest.mark.redis
def test_an_idle_aggregator_on_an_unlimited_budget_sends_nothing_for_the_give_back(
    masters_only_cluster: LocalCluster, rc: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    idle = _idle(masters_only_cluster, _aggregator(rc, 0), monkeypatch)
    assert idle.looks >= 2 * KEYS.shards
    assert idle.calls == [] and idle.watch == []
    assert idle.served.get("hmget", 0) == 0  # the masters saw no read of the pool either


@pytest.mark.redis
def test_an_idle_aggregator_far_from_the_budgets_end_reads_the_pool_once_a_period(
    masters_only_cluster: LocalCluster, rc: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    agg = _aggregator(rc, 10**6)
    shards: set[int] = set()
    k = 0
    while len(shards) < KEYS.shards:  # a frame on every shard, each shard holding its lease
        shards.add(shard_of(f"cam-{k}", KEYS.shards))
        code = open_frame(rc, KEYS, source="cam", source_id="cam", frame_index=k, jpeg=b"x",
                          ttl=600, max_open_frames=10**6, reserve_per_frame=4)  # fmt: skip
        assert code == "opened"
        k += 1
    idle = _idle(masters_only_cluster, agg, monkeypatch)
    assert sum(int(rc.zcard(s.open_frames)) for s in KEYS.every_shard()) == k  # still waiting
    assert idle.looks >= 2 * KEYS.shards
    # the looks: the pool watch's reads alone, at most one a period for all the shards (before:
    # one per shard and look, with one HGETALL and one ZCARD); no shard's open frames counted
    assert idle.watch and set(idle.watch) == {("hmget", KEYS.budget_pool)}
    assert len(idle.watch) <= idle.seconds / GIVE_BACK_SECONDS + 1 < idle.looks
    assert idle.served["hmget"] >= len(idle.watch) + len(idle.calls)
    # the rest of the budget code's calls: decisions of frames a sweep took again, which read
    # the pool for what may still be spent (ShardBudget.combined), and nothing else
    assert set(idle.calls) <= {("hmget", KEYS.budget_pool)}, idle.calls


@pytest.mark.redis
def test_a_limit_set_later_is_seen_at_the_next_look_and_its_pool_is_given_back_at_the_end(
    rc: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(budget_lease, "GIVE_BACK_SECONDS", 0.0)  # every tend is a look
    keys = Keys("gtx", shards=4, cluster=True)
    runner = ScriptRunner(rc)
    shard = keys.for_shard(1)
    budget = ShardBudget(rc, shard, runner, chunk=20, reserve=4,
                         pool=PoolWatch(rc, keys, period=0.0))  # fmt: skip

    def seen() -> dict[str, str]:
        return rc.hgetall(shard.budget)

    set_limit(rc, keys, 0)
    assert budget.tend() == 0  # the first look is a full one: nothing to give while unlimited
    calls: list[tuple[str, Any]] = []
    budget.r = budget.pool.r = Recorder(rc, calls)  # type: ignore[assignment]
    for _ in range(3):
        assert budget.tend(False, seen(), time.monotonic()) == 0
    assert calls == []  # unlimited: the sweep's read of the shard's hash tells it all
    # an aggregator starts with a budget; the shard leases, the pool runs low
    set_limit(rc, keys, 40)
    assert budget.lease(20) == 20
    rc.zadd(shard.open_frames, {"cam-1": 1.0})
    assert ShardBudget(rc, keys.for_shard(2), runner, chunk=20).lease(18) == 18
    assert pool_left(rc, keys) == 2
    assert budget.tend(False, seen(), time.monotonic()) == 20 - 4
    assert rc.hget(keys.budget_pool, "spent") == str(20 + 18 - 16)
