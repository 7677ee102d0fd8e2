"""The budget's end on a Redis Cluster (3 masters on loopback): a sharded aggregator stepping
in-process (its requests answered at once by seeded simulated labelers), frames opened by the
ingester's own ``open_frame`` (with its leases), 8 shards, a budget well below what the frames
would use. What shards hold beyond their open frames' reserve goes back to the pool
(store/budget_lease.py), and the ingester waits while other shards' open frames keep what is
left, so the run spends the whole budget (or each source its whole share). Before the
give-back these runs bought 143 of 150 labels and 54 of a share of 60 (a throwaway driver of the
same shape on 16 shards: 26 to 112 labels of budgets of 1000 left in shards, 49 to 60 of 300).
Never overspent: no shard over its limit, the limits within what the pool leased out, that
within the budget.
"""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest
from redis.cluster import RedisCluster

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.records import LabelEntry
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.pipeline.ingest.ingester import open_frame
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, store
from tests import cluster_fixtures
from tests.aggregator_harness import Capture

SHARDS = 8
KAPPA = 3
ACC = {"ann": 0.9, "bob": 0.85, "cid": 0.8, "dee": 0.75}


masters_only_cluster = cluster_fixtures.masters_only_cluster  # the fixtures
flushed_client = cluster_fixtures.flushed_client


@pytest.fixture
def rc(flushed_client: RedisCluster) -> RedisCluster:
    return flushed_client


def _run(r: RedisCluster, budget: int, share: int, sources: list[str]) -> dict[str, Any]:
    """Open frames of ``sources`` in turn (two per aggregator round) until each is refused
    "budget", then step until every frame is final. The shards' budget hashes, the pool, and
    the final records."""
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    settings = AggregatorSettings(shards=SHARDS, budget=budget, budget_per_source=share,
                                  kappa=KAPPA, tau=0.95, seed=3, sweep_seconds=0.05,
                                  block_ms=1, max_open_frames=32)  # fmt: skip
    cap = Capture()
    agg = ShardedAggregator(r, keys, settings, consumer="agg", enqueue=cap)
    agg.setup()
    store(r, keys, {lab: LabelerAccuracy.given(a, "config") for lab, a in ACC.items()})
    r.zadd(keys.live, {lab: 4e9 for lab in ACC})
    truth: dict[str, int] = {}
    rng = random.Random(3)

    def round_() -> None:
        agg.step()
        for req in cap.pending:
            label = simulated_label(3, req.frame_id, req.labeler_id, truth[req.frame_id],
                                    ACC[req.labeler_id])  # fmt: skip
            entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
            r.xadd(keys.of_frame(req.frame_id).labels, entry.to_fields())
        cap.pending.clear()

    stopped: set[str] = set()
    rounds = 0
    for index in range(2000):
        for src in sorted(set(sources) - stopped):
            truth[f"{src}-{index}"] = rng.randint(0, 1)
            while (code := open_frame(
                r, keys, source=src, source_id=src, frame_index=index, jpeg=b"x", ttl=600,
                max_open_frames=settings.max_open_frames, reserve_per_frame=KAPPA,
                fields={"truth": str(truth[f"{src}-{index}"])}, source_share=share,
            )) == "full":  # fmt: skip
                round_()
                rounds += 1
                assert rounds < 20_000, "the ingester waited for ever"
            if code == "budget":
                stopped.add(src)
        if index % 2:
            round_()
        if stopped == set(sources):
            break
    assert stopped == set(sources), "the budget never ran out"
    while sum(r.zcard(s.open_frames) for s in keys.every_shard()):
        round_()
        rounds += 1
        assert rounds < 20_000, "frames still open"
    return {
        "shards": [
            {k: int(v) for k, v in r.hgetall(s.budget).items()} for s in keys.every_shard()
        ],  # fmt: skip
        "pool": {k: int(v) for k, v in r.hgetall(keys.budget_pool).items()},
        "finals": [dict(f) for s in keys.every_shard() for _, f in r.xrange(s.final)],
    }


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_the_whole_budget_is_spent_over_the_shards_and_never_more(rc: RedisCluster) -> None:
    run = _run(rc, budget=150, share=0, sources=["cam"])
    shards, pool, finals = run["shards"], run["pool"], run["finals"]
    spent = [s.get("spent", 0) for s in shards]
    limits = [s.get("limit", 0) for s in shards]
    assert all(x <= lim for x, lim in zip(spent, limits, strict=True)), (spent, limits)
    assert sum(limits) <= pool["spent"] <= 150
    labels = sum(int(f["n_labels"]) for f in finals)
    reasons = collections.Counter(f["reason"] for f in finals)
    print(f"{len(finals)} frames, {labels} labels, reasons {dict(reasons)}, limits {limits}, "
          f"given back {sum(s.get('returned', 0) for s in shards)}")  # fmt: skip
    assert labels == sum(spent) == 150  # every label of the budget bought, none stranded
    assert sum(s.get("returned", 0) for s in shards) > 0  # given back on the way


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_each_source_spends_its_whole_share_over_the_shards_and_never_more(
    rc: RedisCluster,
) -> None:
    run = _run(rc, budget=0, share=60, sources=["cam-a", "cam-b"])
    shards, pool, finals = run["shards"], run["pool"], run["finals"]
    for src in ("cam-a", "cam-b"):
        spent = [s.get(f"spent:{src}", 0) for s in shards]
        limits = [s.get(f"limit:{src}", 0) for s in shards]
        assert all(x <= lim for x, lim in zip(spent, limits, strict=True)), (src, spent, limits)
        assert sum(limits) <= pool[f"spent:{src}"] <= 60
        labels = sum(int(f["n_labels"]) for f in finals if f["frame_id"].startswith(src + "-"))
        assert labels == sum(spent) == 60, src  # the whole share bought, none stranded
