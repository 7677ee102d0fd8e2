"""`gtx-stream dead --requeue` on a real Redis Cluster (3 masters, 3 replicas on loopback): a
label refused because its labeler was not registered goes back to its frame's shard and is
applied once.

Eight shards; one frame, on shard 5, is opened and asked about by a real sharded aggregator
stepping in-process (its requests captured, not enqueued to RQ). The labeler asked is
unregistered (the labelers hash and every shard's copy of it) before its label arrives, so the
label becomes a dead letter on shard 5's dead stream. While the labeler is unknown, ``dead
--requeue`` leaves the letter with why (also while the labeler is back in the labelers hash but
not yet in the shard's copy, which ``apply_labels.lua`` checks); once ``gtx-stream labelers
load`` has registered it again (every shard's copy included), ``dead --requeue --json``, run as
a process with the cluster's config, moves the letter back onto shard 5's labels stream, and
the aggregator applies it for its request, exactly once (invariant 3), with no new dead letter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from redis.cluster import RedisCluster

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.records import LabelEntry, RequestState
from gtx_stream.pipeline.aggregate.intake import DEAD_REASONS
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.params import LabelerAccuracy, store
from tests import cluster_fixtures
from tests.aggregator_harness import Capture, open_frame, post_label
from tests.cluster_fixtures import LocalCluster, cluster_config, run_cli

local_cluster = cluster_fixtures.local_cluster  # the fixture

SHARDS = 8
SHARD = 5  # the frame's shard
ACC = {"alice": 0.9, "bob": 0.8, "carol": 0.85}
UNKNOWN = DEAD_REASONS["unknown_labeler"]


def _records(r: RedisCluster, stream: str) -> list[dict[str, str]]:
    return [dict(fields) for _, fields in r.xrange(stream)]


def _dead(r: RedisCluster, keys: Keys) -> dict[int, list[dict[str, str]]]:
    """Each shard's dead letters, of the shards that have any."""
    found = {k: _records(r, shard.dead) for k, shard in enumerate(keys.every_shard())}
    return {k: letters for k, letters in found.items() if letters}


def _steps_until(agg: ShardedAggregator, done: Any, what: str, max_steps: int = 200) -> None:
    for _ in range(max_steps):
        agg.step()
        if done():
            return
    raise AssertionError(f"aggregator steps: no {what}")


@pytest.mark.redis
@pytest.mark.timeout(120)
def test_a_label_refused_for_an_unregistered_labeler_is_requeued_on_its_shard_of_a_cluster(
    tmp_path: Path,
    local_cluster: LocalCluster,
    redis_url: str,
) -> None:
    config = cluster_config(tmp_path / "pipeline.toml", local_cluster.url, redis_url, ACC, 5,
                            aggregator={"shards": SHARDS, "budget": 0, "kappa": 3})  # fmt: skip

    def cli(*command: str) -> str:
        return run_cli(config, *command)

    keys = Keys("gtx", shards=SHARDS, cluster=True)
    shard = keys.for_shard(SHARD)
    r = local_cluster.client(decode_responses=True)
    try:
        # no budget: the harness opens frames without the budget lease an ingester takes
        # first on a cluster (a shard's own budget starts at nothing)
        settings = AggregatorSettings(shards=SHARDS, budget=0, kappa=3, tau=0.999, seed=5,
                                      sweep_seconds=0.05, block_ms=5)  # fmt: skip
        cap = Capture()
        agg = ShardedAggregator(r, keys, settings, consumer="agg-a", enqueue=cap)
        agg.setup()  # stores the shard count, which store() mirrors the labelers by
        store(r, keys, {lab: LabelerAccuracy.given(a, "config") for lab, a in ACC.items()})
        r.zadd(keys.live, {lab: 4e9 for lab in ACC})
        index = next(i for i in range(1000) if shard_of(f"src-{i}", SHARDS) == SHARD)
        fid = open_frame(r, keys, index, truth=1)
        _steps_until(agg, lambda: cap.pending, "request")
        assert len(agg.owned) == SHARDS
        [req] = cap.pending
        cap.pending.clear()
        lab = req.labeler_id

        # unregistered before its label arrives: a dead letter on the frame's shard
        registration = r.hget(keys.labelers, lab)
        r.hdel(keys.labelers, lab)
        for each in keys.every_shard():
            r.hdel(each.script_labelers, lab)
        post_label(r, shard, req, ACC)
        labels_sent = r.xlen(shard.labels)
        _steps_until(agg, lambda: r.xlen(shard.dead), "dead letter")
        dead = _dead(r, keys)
        assert list(dead) == [SHARD] and [d["reason"] for d in dead[SHARD]] == [UNKNOWN]

        # still unregistered: left where it is, with why
        doc = json.loads(cli("dead", "--requeue", "--json"))
        assert doc["requeued"] == []
        assert [(g["why"], g["count"]) for g in doc["not_requeued"]] == [
            ("labeler still not registered", 1)
        ]
        assert r.xlen(shard.dead) == 1

        # back in the labelers hash but not in the shard's copy (a registration cut short
        # between its two writes): apply_labels.lua would refuse it again, so it stays
        r.hset(keys.labelers, lab, registration)
        doc = json.loads(cli("dead", "--requeue", "--json"))
        assert doc["requeued"] == []
        assert [g["why"] for g in doc["not_requeued"]] == ["labeler still not registered"]
        assert r.xlen(shard.dead) == 1 and r.xlen(shard.labels) == labels_sent

        # registered again as the product does it: every shard's copy sees the labeler
        accuracies = tmp_path / "again.csv"
        accuracies.write_text(f"id,accuracy\n{lab},{ACC[lab]}\n")
        cli("labelers", "load", str(accuracies))
        assert all(r.hexists(each.script_labelers, lab) for each in keys.every_shard())

        labels_before = [r.xlen(each.labels) for each in keys.every_shard()]
        doc = json.loads(cli("dead", "--requeue", "--json"))
        [moved] = doc["requeued"]
        assert doc["not_requeued"] == []
        assert moved["reason"] == UNKNOWN and moved["payload"]["labeler"] == lab
        assert moved["payload"]["frame_id"] == fid
        assert _dead(r, keys) == {}
        # back on the frame's shard labels stream only, as the refused entry was
        labels_after = [r.xlen(each.labels) for each in keys.every_shard()]
        assert labels_after == [n + (k == SHARD) for k, n in enumerate(labels_before)]
        [(new_id, fields)] = r.xrange(shard.labels, moved["labels_id"], moved["labels_id"])
        assert LabelEntry.from_fields(fields) == LabelEntry.from_fields(moved["payload"])
        assert LabelEntry.from_fields(fields).request_id == req.request_id
        assert int(r.hget(shard.stats, "requeued") or 0) == 1
        assert json.loads(cli("dead", "--requeue", "--json")) == {
            "requeued": [], "not_requeued": []
        }  # fmt: skip

        # applied like any other label: once, for its request
        state = RequestState("done", new_id).encode()
        _steps_until(agg, lambda: r.hget(keys.frame_requests(fid), lab) == state, "apply")
        assert int(r.hget(shard.stats, "labels_applied") or 0) == 1

        def answered_until_final() -> bool:
            while cap.pending:
                asked = cap.pending.pop(0)
                post_label(r, keys.of_frame(asked.frame_id), asked, ACC)
            return r.zcard(shard.open_frames) == 0

        _steps_until(agg, answered_until_final, "final record")
        [record] = _records(r, shard.final)
        assert record["frame_id"] == fid
        labelers = json.loads(record["labelers"])
        assert labelers.count(lab) == 1 and len(labelers) == len(set(labelers))
        assert int(record["n_labels"]) == len(labelers)
        assert [q.labeler_id for q in cap.all].count(lab) == 1  # asked once, counted once
        assert _dead(r, keys) == {}
        assert all(not _records(r, each.final) for each in keys.every_shard() if each != shard)
    finally:
        r.close()
