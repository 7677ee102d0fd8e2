"""Sources' shares of the budget (``aggregator.budget_per_source``) on a real Redis Cluster (3
masters, 3 replicas on loopback): each share is a pool that the shards lease chunks of, so a
source never spends more than its share over all shards, while the other source goes on.

The aggregator and the labeler worker run as processes; an application submits the frames of
two sources through ``Client.submit`` until each source is refused (its share spent).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from gtx_stream.client.errors import BudgetSpent
from gtx_stream.ops.supervisor import Supervisor
from tests import cluster_fixtures
from tests.cluster_fixtures import LocalCluster, cluster_config, run_cli, start_pipeline

local_cluster = cluster_fixtures.local_cluster  # the fixture

SHARDS = 4
SHARE = 30
ACC = {"a": 0.8, "b": 0.75, "c": 0.7}  # two agreeing labels stay under tau: kappa labels


@pytest.mark.redis
@pytest.mark.timeout(240)
def test_each_source_spends_at_most_its_share_over_every_shard(
    tmp_path: Path, local_cluster: LocalCluster, redis_url: str
) -> None:
    from gtx_stream.client import Client
    from gtx_stream.config import load_settings

    config = cluster_config(
        tmp_path / "pipeline.toml", local_cluster.url, redis_url, ACC, 3,
        aggregator={"shards": SHARDS, "kappa": 3, "tau": 0.99, "budget_per_source": SHARE},
    )  # fmt: skip
    settings = load_settings(config)
    sup = Supervisor(config=config, log_dir=tmp_path / "logs")
    image = np.full((24, 24, 3), 90, np.uint8)
    submitted: dict[str, list[str]] = {"cam-a": [], "cam-b": []}
    try:
        with Client(settings) as client:
            start_pipeline(sup, client, ACC)
            r, keys = client.redis, client.keys
            refused = set()
            for _ in range(40):  # more frames than a share buys (3 labels each)
                for source in sorted(set(submitted) - refused):
                    try:
                        submitted[source].append(client.submit(image, source=source, truth=1))
                    except BudgetSpent:
                        refused.add(source)
                time.sleep(0.02)
            ids = [fid for fids in submitted.values() for fid in fids]
            waited = [client.wait(fid, timeout=60) for fid in ids]
            pool = {k.decode(): int(v) for k, v in r.hgetall(keys.budget_pool).items()}
            shards = [{k.decode(): int(v) for k, v in r.hgetall(s.budget).items()}
                      for s in keys.every_shard()]  # fmt: skip
            status = json.loads(run_cli(config, "status", "--json"))
    finally:
        sup.stop_all(timeout=10)
    assert refused == {"cam-a", "cam-b"}  # both shares ran out before 40 frames each
    assert [rec.frame_id for rec in waited] == ids  # every frame final once
    rows = {row["source"]: row for row in status["sources"]}
    for source, fids in submitted.items():
        labels = sum(rec.n_labels for rec in waited if rec.frame_id in fids)
        spent = sum(s.get(f"spent:{source}", 0) for s in shards)
        leased = [s.get(f"limit:{source}", 0) for s in shards]
        assert labels <= spent <= sum(leased) <= pool[f"spent:{source}"] <= SHARE, source
        assert all(s.get(f"spent:{source}", 0) <= s.get(f"limit:{source}", 0) for s in shards)
        assert labels >= SHARE // 2, (source, labels)  # most of the share was bought
        assert len({keys.of_frame(f).shard for f in fids}) > 1  # over several shards
        assert rows[source]["spent"] == spent and rows[source]["finalised"] == len(fids)
