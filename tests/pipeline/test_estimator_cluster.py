"""``gtx-stream estimator`` on a real Redis Cluster (3 masters, 3 replicas on loopback): each
shard has a final stream of its own, and the estimator's window is over all of them.

The final records are written straight onto the shards' final streams (as ``finalise.lua``
leaves them), with explicit entry ids where the order across shards matters. The window keeps
the newest whole frames across the shards, merged by entry id; later fills add what any shard
gained, oldest first, including a shard whose stream was empty at the first fill, and never
what a shard held before the first fill that did not fit in it. The service, run as a process
with the cluster's config (``--once``), fits EM over the labels of every shard and writes
``em`` records into the labelers hash the aggregators read.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from redis.cluster import RedisCluster

from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.estimate.window import LabelWindow
from gtx_stream.store import em_params
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, get_labelers, store
from gtx_stream.store.shards import check_shard_count
from tests import cluster_fixtures
from tests.cluster_fixtures import LocalCluster, cluster_config, run_cli

local_cluster = cluster_fixtures.local_cluster  # the fixture

SHARDS = 4
TRUE = {"good": 0.92, "fair": 0.8, "new": 0.85}


def _final(
    r: RedisCluster, keys: Keys, shard: int, i: int, labels: dict[str, int], entry_id: str = "*"
) -> None:
    rec = FinalRecord(frame_id=f"f{i}", label=next(iter(labels.values())), p1=0.5,
                      confidence=0.5, reason="kappa", method="gtx", labelers=list(labels),
                      labels=list(labels.values()), accuracies=[0.5] * len(labels),
                      finalised_at=time.time())  # fmt: skip
    r.xadd(keys.for_shard(shard).final, rec.to_fields(), id=entry_id)  # type: ignore[arg-type]


def _pipeline_keys(r: RedisCluster) -> Keys:
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    check_shard_count(r, keys)  # as the first aggregator stores it
    return keys


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_the_window_merges_every_shards_final_stream_by_entry_id(
    local_cluster: LocalCluster,
) -> None:
    r = local_cluster.client()
    try:
        keys = _pipeline_keys(r)
        # frames 0..7 on shards 0, 1, 2, 0, 1, 2, ...: shard 3's stream is empty for now
        for i in range(8):
            _final(r, keys, i % 3, i, {"a": 1, "b": 0}, entry_id=f"{1000 + i}-0")
        win = LabelWindow(r, Keys("gtx"), capacity=7)  # as the service builds it
        assert len(win.streams()) == SHARDS
        assert win.fill() == 6  # the newest three whole frames of two labels, across shards
        assert [f.frame_id for f in win.frames] == ["f5", "f6", "f7"]
        assert win.fill() == 0
        # later: new records on shards 3 (its first), 1 and 0, written out of shard order
        _final(r, keys, 1, 9, {"a": 0, "b": 0}, entry_id="2001-0")
        _final(r, keys, 3, 8, {"a": 1, "b": 1}, entry_id="2000-0")
        _final(r, keys, 0, 10, {"a": 1}, entry_id="2002-0")
        assert win.fill() == 5
        assert [f.frame_id for f in win.frames] == ["f7", "f8", "f9", "f10"]
        assert win.n_labels == 7 == sum(len(f.labels) for f in win.frames)
        assert win.fill() == 0
        # a restarted estimator reads the same window back
        again = LabelWindow(r, Keys("gtx"), capacity=7)
        assert again.fill() == 7 and list(again.frames) == list(win.frames)
    finally:
        r.close()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_shard_left_out_of_the_first_window_is_not_read_again(
    local_cluster: LocalCluster,
) -> None:
    r = local_cluster.client()
    try:
        keys = _pipeline_keys(r)
        _final(r, keys, 0, 0, {"a": 1, "b": 1}, entry_id="1000-0")  # the oldest, alone on shard 0
        for i in range(1, 4):
            _final(r, keys, 1, i, {"a": 0, "b": 1}, entry_id=f"{1000 + i}-0")
        win = LabelWindow(r, Keys("gtx"), capacity=4)
        assert win.fill() == 4 and [f.frame_id for f in win.frames] == ["f2", "f3"]
        assert win.fill() == 0  # shard 0's frame is older than the window: not read now either
        _final(r, keys, 0, 4, {"a": 1, "b": 0}, entry_id="2000-0")
        assert win.fill() == 2 and [f.frame_id for f in win.frames] == ["f3", "f4"]
    finally:
        r.close()


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_the_estimator_fits_over_every_shard_and_writes_em_records_on_a_cluster(
    tmp_path: Path, local_cluster: LocalCluster, redis_url: str
) -> None:
    r = local_cluster.client()
    try:
        keys = _pipeline_keys(r)
        store(r, keys, {
            "good": LabelerAccuracy((18 + 1) / 22, 0.0, 1.0, "assessment", 20, correct=18),
            "fair": LabelerAccuracy((8 + 1) / 12, 0.0, 1.0, "assessment", 10, correct=8),
            "new": LabelerAccuracy.given(0.6, "config"),  # no gold: EM learns it from labels
        })  # fmt: skip
        rng = np.random.default_rng(3)
        n_frames = 400
        for i in range(n_frames):
            y = int(rng.integers(0, 2))
            labels = {lab: y if rng.random() < acc else 1 - y for lab, acc in TRUE.items()}
            _final(r, keys, i % SHARDS, i, labels)
        assert all(r.xlen(shard.final) == n_frames // SHARDS for shard in keys.every_shard())
        config = cluster_config(tmp_path / "pipeline.toml", local_cluster.url, redis_url, TRUE,
                                1, aggregator={"shards": SHARDS},
                                estimator={"min_labels": 10})  # fmt: skip
        out = run_cli(config, "estimator", "--once")
        assert f"EM over {3 * n_frames} labels of {n_frames} frames" in out
        assert "wrote fair, good, new" in out
        fitted = get_labelers(r, keys)
        assert {lab: rec.source for lab, rec in fitted.items()} == dict.fromkeys(
            TRUE, em_params.EM_SOURCE
        )
        # "new" had no gold: 0.6 from the config before, its share right in the labels now
        assert abs(fitted["new"].accuracy - TRUE["new"]) < 0.06
        assert all(abs(fitted[lab].accuracy - TRUE[lab]) < 0.06 for lab in TRUE)
        raw = json.loads(r.hget(keys.labelers, "new") or "{}")
        assert raw.get("source") == em_params.EM_SOURCE
    finally:
        r.close()
