"""client.submit at the budget's end on a Redis Cluster (3 masters on loopback, 8 shards), where
the budget is leased to shards in chunks (store/budget_lease.py): a spent budget is
``BudgetSpent``, as on one Redis, never ``PipelineFull``; ``PipelineFull`` only while labels of
the budget are still kept for open frames (on one Redis the same state is "full" too)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from redis.cluster import RedisCluster

from gtx_stream.client import BudgetSpent, Client, PipelineFull
from gtx_stream.config import AggregatorSettings, RedisSettings, Settings
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.records import LabelEntry
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.store.budget_lease import set_limit
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, store
from tests import cluster_fixtures
from tests.aggregator_harness import Capture
from tests.cluster_fixtures import LocalCluster

SHARDS = 8
KAPPA = 3
ACC = {"ann": 0.9, "bob": 0.85, "cid": 0.8, "dee": 0.75}
IMAGE = np.full((16, 16, 3), 128, np.uint8)

masters_only_cluster = cluster_fixtures.masters_only_cluster  # the fixtures
flushed_client = cluster_fixtures.flushed_client


@pytest.fixture
def rc(flushed_client: RedisCluster) -> RedisCluster:
    return flushed_client


def settings_of(cluster: LocalCluster, **aggregator: Any) -> Settings:
    return Settings(
        redis=RedisSettings(url=cluster.url, cluster=True),
        aggregator=AggregatorSettings(
            shards=SHARDS,
            kappa=KAPPA,
            tau=0.95,
            seed=3,
            sweep_seconds=0.05,
            block_ms=1,
            max_open_frames=32,
            **aggregator,
        ),  # fmt: skip
    )


@pytest.fixture
def make_client(masters_only_cluster: LocalCluster) -> Iterator[Any]:
    made: list[Client] = []

    def make(**aggregator: Any) -> Client:
        made.append(Client(settings_of(masters_only_cluster, **aggregator)))
        return made[-1]

    yield make
    for client in made:
        client.close()


def budgets(r: RedisCluster, keys: Keys) -> tuple[dict[str, int], list[dict[str, int]]]:
    """The pool's hash and each shard's budget hash."""
    pool = {k: int(v) for k, v in r.hgetall(keys.budget_pool).items()}
    return pool, [{k: int(v) for k, v in r.hgetall(s.budget).items()} for s in keys.every_shard()]


def unspent(r: RedisCluster, keys: Keys, source: str = "", share: int = 0) -> int:
    """Labels of the budget (or, with ``share``, of ``source``'s share) not spent yet: what the
    pool has not leased out, and what shards hold of their leases."""
    sfx = f":{source}" if share else ""
    pool, shards = budgets(r, keys)
    pooled = (share or pool.get("limit", 0)) - pool.get(f"spent{sfx}", 0)
    return pooled + sum(max(0, s.get(f"limit{sfx}", 0) - s.get(f"spent{sfx}", 0)) for s in shards)


@pytest.mark.redis
@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("budget", "share", "sources"),
    [(60, 0, ["cam"]), (0, 24, ["cam-a", "cam-b"])],
    ids=["budget", "source-share"],
)
def test_a_spent_budget_is_budget_spent_never_pipeline_full(
    masters_only_cluster: LocalCluster, rc: RedisCluster, make_client: Any, budget: int,
    share: int, sources: list[str],
) -> None:  # fmt: skip
    """Submitting (timeout 0) while a sharded aggregator finalises, until every source is told
    BudgetSpent: each PipelineFull came while labels were still unspent somewhere, each
    BudgetSpent once all were spent (asked); after the last frames end, a submit with a timeout
    is BudgetSpent at once, not PipelineFull after it."""
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    cap = Capture()
    settings = settings_of(masters_only_cluster, budget=budget, budget_per_source=share)
    agg = ShardedAggregator(rc, keys, settings.aggregator, consumer="agg", enqueue=cap)
    agg.setup()
    store(rc, keys, {lab: LabelerAccuracy.given(a, "config") for lab, a in ACC.items()})
    rc.zadd(keys.live, {lab: 4e9 for lab in ACC})
    client = make_client(budget=budget, budget_per_source=share)
    rng = random.Random(3)

    def round_() -> None:
        agg.step()
        for req in cap.pending:
            label = simulated_label(3, req.frame_id, req.labeler_id, rng.randint(0, 1),
                                    ACC[req.labeler_id])  # fmt: skip
            entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
            rc.xadd(keys.of_frame(req.frame_id).labels, entry.to_fields())
        cap.pending.clear()

    def left(source: str) -> int:
        return unspent(rc, keys, source, share)

    spent: set[str] = set()
    fulls = opened = 0
    for _ in range(5000):
        for src in sorted(set(sources) - spent):
            try:
                client.submit(IMAGE, source=src, timeout=0)
                opened += 1
            except PipelineFull:
                fulls += 1
                assert left(src) > 0, f"PipelineFull for {src} with its budget spent"
            except BudgetSpent:
                assert left(src) == 0, f"BudgetSpent for {src} with {left(src)} labels unspent"
                spent.add(src)
        if spent == set(sources):
            break
        round_()
    assert spent == set(sources), "the budget never ran out"
    for _ in range(5000):  # the frames still open end
        if not sum(rc.zcard(s.open_frames) for s in keys.every_shard()):
            break
        round_()
    _, shards = budgets(rc, keys)
    for src in sources:
        t0 = time.monotonic()
        with pytest.raises(BudgetSpent):
            client.submit(IMAGE, source=src, timeout=5)
        assert time.monotonic() - t0 < 1.0  # at once, not after the timeout
        sfx = f":{src}" if share else ""
        assert sum(s.get(f"spent{sfx}", 0) for s in shards) == (share or budget)
    print(f"{opened} frames opened, {fulls} times full before the budget's end")


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_full_while_open_frames_keep_the_budget_left_then_budget_spent_at_once(
    rc: RedisCluster, make_client: Any
) -> None:
    """No aggregator: frames open until what is left of a budget of 12 is kept for them (kappa 3
    each), then PipelineFull (they may still need it). Labels a shard holds with no frame
    open are taken back for the next frame. Once the frames spent everything, BudgetSpent at
    once, whatever the timeout."""
    client = make_client(budget=12)
    keys = client.keys
    set_limit(rc, keys, 12)
    opened = []
    with pytest.raises(PipelineFull):
        for _ in range(20):
            opened.append(client.submit(IMAGE, source="cam", timeout=0))
    assert 1 <= len(opened) <= 12 // KAPPA
    assert unspent(rc, keys) > 0
    with pytest.raises(PipelineFull, match="stayed full for 0.2 s"):
        client.submit(IMAGE, source="cam", timeout=0.2)
    # the frames end: one spends all but 1 of what its shard holds, the others all of it
    leftover = keys.of_frame(opened[0])
    for shard in keys.every_shard():
        limit = int(rc.hget(shard.budget, "limit") or 0)
        rc.hset(shard.budget, "spent", limit - (1 if shard.shard == leftover.shard else 0))
        rc.delete(shard.open_frames)
    assert unspent(rc, keys) == 1
    fid = client.submit(IMAGE, source="cam", timeout=0)  # on the label given back
    rc.hincrby(keys.of_frame(fid).budget, "spent", 1)  # it spends it
    rc.delete(keys.of_frame(fid).open_frames)
    assert unspent(rc, keys) == 0
    t0 = time.monotonic()
    with pytest.raises(BudgetSpent, match="budget is spent"):
        client.submit(IMAGE, source="cam", timeout=5)
    assert time.monotonic() - t0 < 1.0
