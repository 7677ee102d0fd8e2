"""The pipeline on a real Redis Cluster (3 masters, 3 replicas on loopback), a master killed
mid-run (kill -9) so that its replica takes over.

The state and streams live on the cluster (``redis.cluster``), the label requests on a
standalone Redis (``redis.queue_url``: RQ does not run on a cluster). Four shards spread the
frames over the masters; the master that holds the shard with the most open frames is killed
while frames are open and requests out. The run must still end with invariants 1 to 5 and 8:
every opened frame on a final stream exactly once (none lost, none twice), no frame with two
labels of one labeler, each label counted once for the request it answers, the budget (split
by leases over the shards) never overspent, at most ``max_inflight`` requests out per frame,
and every finalised frame's image in the export exactly once.
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from redis.cluster import RedisCluster

from gtx_stream.core.records import DeadLetter, LabelEntry
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.aggregate.intake import DEAD_REASONS
from gtx_stream.store.keys import Keys, split_lease_member
from tests import cluster_fixtures
from tests.cluster_fixtures import RETRYABLE, LocalCluster, cluster_config, run_cli, start_pipeline

local_cluster = cluster_fixtures.local_cluster  # the fixture

N_FRAMES = 150
SHARDS = 4
BUDGET = 480
KAPPA = 4
ACC = {"ann": 0.9, "bob": 0.85, "cid": 0.8, "dee": 0.75}


def _quiet(fn: Any, default: Any) -> Any:
    """``fn()``, or ``default`` while the cluster fails over."""
    try:
        return fn()
    except (*RETRYABLE, redis.ResponseError):
        return default


def _final(r: RedisCluster, keys: Keys) -> list[dict[str, str]]:
    return [dict(f) for shard in keys.every_shard() for _, f in r.xrange(shard.final)]


def _open(r: RedisCluster, keys: Keys) -> int:
    return sum(r.zcard(shard.open_frames) for shard in keys.every_shard())


def _inflight_per_frame(r: RedisCluster, keys: Keys) -> int:
    """The most requests out on one frame now (their leases)."""
    out: collections.Counter[str] = collections.Counter()
    for shard in keys.every_shard():
        for member in r.zrange(shard.leases, 0, -1):
            out[split_lease_member(member)[0]] += 1
    return max(out.values(), default=0)


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pipeline_on_a_cluster_survives_the_kill_of_a_master(
    tmp_path: Path,
    local_cluster: LocalCluster,
    redis_url: str,
) -> None:
    video = tmp_path / "line.avi"
    truths = write_synthetic_video(video, N_FRAMES, seed=5)
    write_truth_csv(tmp_path / "truth.csv", truths)
    config = tmp_path / "pipeline.toml"
    # every node, so that a service started after the kill (the exporter) finds a live one
    nodes = "redis://" + ",".join(f"127.0.0.1:{port}" for port in local_cluster.ports)
    agg = {"shards": SHARDS, "budget": BUDGET, "kappa": KAPPA, "max_open_frames": 16,
           "sweep_seconds": 0.5, "lease_seconds": 4.0, "claim_idle_seconds": 2.0}  # fmt: skip
    cluster_config(config, nodes, redis_url, ACC, 5, aggregator=agg)
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    r = local_cluster.client(decode_responses=True)
    sup = Supervisor(config=config, log_dir=tmp_path / "logs")

    def logs() -> str:
        return "\n".join(f"--- {s.name} (exit {s.returncode}) ---\n{s.tail(20)}"
                         for s in sup.services.values())  # fmt: skip

    def wait(what: str, predicate: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not _quiet(predicate, False):
            failed = sup.failed()
            assert not failed, f"{failed[0].name} failed waiting for {what}\n{logs()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{logs()}"
            most = _quiet(lambda: _inflight_per_frame(r, keys), 0)
            assert most <= 1, f"a frame with {most} requests out (max_inflight 1)"
            time.sleep(0.1)

    try:
        sup.start("agg", "aggregator", "--consumer", "agg-a")
        sup.start("labelers", "labeler", *[x for lab in ACC for x in ("--id", lab)])
        wait("labelers live", lambda: set(ACC) <= set(r.zrange(keys.live, 0, -1)), 60)
        sup.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        wait("a third of the frames final", lambda: len(_final(r, keys)) >= N_FRAMES // 3, 120)
        # the master of the shard with most open frames, with requests out
        busiest = max(keys.every_shard(), key=lambda s: r.zcard(s.open_frames))
        victim = local_cluster.master_of_key(busiest.open_frames)
        out_before = r.zcard(busiest.leases)
        local_cluster.kill_master(victim)
        took = local_cluster.wait_failover(victim, timeout=60)
        wait("the run to end", lambda: not sup.services["ingester"].running
             and _open(r, keys) == 0, 180)  # fmt: skip
        export = subprocess.run(
            [sys.executable, "-m", "gtx_stream", "export", "--config", str(config),
             "--out", str(tmp_path / "dataset")],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert export.returncode == 0, export.stderr + logs()
        for name in ("agg", "labelers"):
            assert sup.services[name].running, logs()
        opened_count = sum(int(r.hget(s.stats, "frames_opened") or 0) for s in keys.every_shard())
        summary = sup.services["ingester"].tail(1)
        records = _final(r, keys)
        stats = [r.hgetall(s.stats) for s in keys.every_shard()]
        spent = [int(r.hget(s.budget, "spent") or 0) for s in keys.every_shard()]
        limits = [int(r.hget(s.budget, "limit") or 0) for s in keys.every_shard()]
        pool = r.hgetall(keys.budget_pool)
        dead = [DeadLetter.from_fields(f) for s in keys.every_shard() for _, f in r.xrange(s.dead)]
    finally:
        sup.stop_all(timeout=10)
        r.close()
    print(f"master {victim} killed with {out_before} requests out on its busiest shard; "
          f"failover took {took:.2f} s; {len(records)} final, {sum(spent)} labels spent "
          f"(shards' leases {limits}, pool {pool}); "
          f"dead letters {[d.reason for d in dead]}")  # fmt: skip
    # invariant 2: every opened frame once on a final stream (none lost, none twice)
    # (the ingester opens the video's frames in order, until the budget's end)
    finals = sorted(f["frame_id"] for f in records)
    assert f"opened {opened_count}," in summary, summary
    assert opened_count > N_FRAMES // 2
    source_id = finals[0].rsplit("-", 1)[0]
    opened = sorted(f"{source_id}-{i}" for i in range(opened_count))
    assert finals == opened, "lost or duplicated on the final streams"
    # no frame dropped; a label entry dead-lettered only as a second copy of one counted already:
    # a labeler worker whose XADD was cut off by the kill sends it again (at least once), and
    # the copy that also got in is refused
    resent = {DEAD_REASONS["duplicate"], DEAD_REASONS["finalised"]}
    assert all(d.kind == "label" and d.reason in resent for d in dead), dead
    # invariant 1, and 3: each label counted once, and only for a request that was granted
    for f in records:
        labs = json.loads(f["labelers"])
        assert len(labs) == len(set(labs)) == int(f["n_labels"]) == len(json.loads(f["labels"]))
        assert int(f["n_labels"]) <= KAPPA, f
    applied = sum(int(st.get("labels_applied", 0)) for st in stats)
    requests = sum(int(st.get("requests", 0)) for st in stats)
    assert applied == sum(int(f["n_labels"]) for f in records) <= requests
    # invariant 4: no shard spent more than its lease, the leases add up to at most the budget
    assert all(s <= lim for s, lim in zip(spent, limits, strict=True)), (spent, limits)
    assert sum(limits) <= int(pool["spent"]) <= BUDGET
    assert sum(int(f["n_labels"]) for f in records) <= sum(spent)
    # invariant 8: every finalised frame's image exported exactly once
    manifest = (tmp_path / "dataset" / "manifest.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in manifest]
    assert sorted(row["frame_id"] for row in rows) == finals
    assert all(row["image_status"] == "ok" for row in rows), rows[:3]


@pytest.mark.redis
@pytest.mark.timeout(180)
def test_the_client_submits_waits_and_reads_every_shards_final_stream_on_a_cluster(
    tmp_path: Path,
    local_cluster: LocalCluster,
    redis_url: str,
) -> None:
    from gtx_stream.client import Client
    from gtx_stream.config import load_settings

    config = cluster_config(tmp_path / "pipeline.toml", local_cluster.url, redis_url, ACC, 1,
                            aggregator={"shards": 8, "budget": 200, "kappa": 3})  # fmt: skip
    sup = Supervisor(config=config, log_dir=tmp_path / "logs")
    settings = load_settings(config)
    image = np.full((32, 32, 3), 128, np.uint8)
    try:
        with Client(settings) as client:
            start_pipeline(sup, client, ACC)
            ids = [client.submit(image, source="cam", truth=i % 2) for i in range(24)]
            shards = {client.keys.of_frame(fid).shard for fid in ids}
            assert len(shards) > 4  # the frames spread over the shards
            waited = [client.wait(fid, timeout=60) for fid in ids]
            assert [rec.frame_id for rec in waited] == ids
            read = [rec.frame_id for rec in client.final_labels("app", "c1", idle_seconds=2)]
            # a label of a labeler nobody registered, for a frame of shard 5: a dead letter there
            fid = next(f for f in ids if client.keys.of_frame(f).shard == 5)
            entry = LabelEntry(frame_id=fid, labeler="zed", request_id="r", label=1)
            client.redis.xadd(client.keys.for_shard(5).labels, entry.to_fields())
            deadline = time.monotonic() + 30
            while not client.redis.xlen(client.keys.for_shard(5).dead):
                assert time.monotonic() < deadline, "no dead letter"
                time.sleep(0.1)

            def cli(*command: str) -> Any:
                return run_cli(config, *command)

            status = json.loads(cli("status", "--json"))
            tailed = [json.loads(line)["frame_id"] for line in cli("tail", "--json").splitlines()]
            inspected = json.loads(cli("frame", fid, "--json"))
            dead = json.loads(cli("dead", "--json"))
            requeue = json.loads(cli("dead", "--requeue", "--json"))
    finally:
        sup.stop_all(timeout=10)
    # tail, frame and dead read every shard (or the frame's)
    assert sorted(tailed) == sorted(ids)
    assert inspected["final"]["frame_id"] == fid and len(inspected["dead"]) == 1
    assert dead["dead_letters"] == 1
    assert "not registered" in dead["reasons"][0]["reason"]
    assert requeue["requeued"] == []  # read on its shard, and left there: zed is still unknown
    assert [(g["why"], g["count"]) for g in requeue["not_requeued"]] == [
        ("labeler still not registered", 1)
    ]
    assert sorted(read) == sorted(ids)  # every shard's final stream, each record once
    st = status
    assert st["frames_finalised"] == st["final_stream_length"] == 24
    assert st["frames_open"] == 0
    assert 24 <= st["budget_spent"] <= 200 == st["budget_limit"]
