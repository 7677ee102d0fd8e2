"""On a real Redis Cluster a labeler registered outside the aggregator reaches every shard's
copy of the registry (which ``apply_labels.lua`` checks) within the aggregator's next balance
round, also when whoever registered it wrote shard 0's copy alone (the label server qualifying
a person before the pipeline's shard count was stored)."""

from __future__ import annotations

import json

import pytest

from gtx_stream.config import AggregatorSettings
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.store.keys import Keys
from tests import cluster_fixtures
from tests.aggregator_harness import Capture
from tests.cluster_fixtures import LocalCluster

local_cluster = cluster_fixtures.local_cluster  # the fixture

SHARDS = 4


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_labeler_registered_meanwhile_is_mirrored_to_every_shard(
    local_cluster: LocalCluster,
) -> None:
    r = local_cluster.client(decode_responses=True)
    try:
        agg = ShardedAggregator(r, Keys("gtx"), AggregatorSettings(shards=SHARDS),
                                consumer="agg-a", enqueue=Capture())  # fmt: skip
        agg.setup()
        keys = agg.keys
        # registered in the registry, and in shard 0's copy only
        r.hset(keys.labelers, "cat", json.dumps({"accuracy": 0.8, "source": "gold"}))
        r.hset(keys.for_shard(0).script_labelers, "cat", "1")
        assert [r.hexists(s.script_labelers, "cat") for s in keys.every_shard()] == [
            True, False, False, False]  # fmt: skip
        agg.balance()
        assert [r.hexists(s.script_labelers, "cat") for s in keys.every_shard()] == [True] * 4
        agg.release()
    finally:
        r.close()
