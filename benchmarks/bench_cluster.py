"""Redis Cluster: the load across the masters with one shard against sixteen, in the same run.

Run:  .venv/bin/python benchmarks/bench_cluster.py [--frames 1500] [--labelers 6] [--batch 16]
          [--pairs 1] [--shards-a 1] [--shards-b 16] [--aggregators 1] [--wait-replicas 1]
          [--max-open-frames 512] [--json]

Each run is the whole pipeline of ``bench_batch.py`` (a synthetic video, the ingester, one
labeler worker process per instant ``simulated`` labeler, ``batch`` frames per request, one
``gtx-stream aggregator``) with its state and streams on a fresh local Redis Cluster of 3
masters and 3 replicas (``tests/cluster_fixtures.py``, ``redis.cluster = true``,
``redis.wait_replicas`` as given, default 1: each node's round trip of script calls ends with
``WAIT 1``) and its label requests on a standalone ``redis-server`` the benchmark starts
(``redis.queue_url``). The runs alternate between ``aggregator.shards = A`` (default 1, the
baseline: every key a script touches is under ``{s0}``, one slot, so one master takes all the
state's load) and ``B`` (default 16: the shards' slots spread over the three masters),
``--pairs`` times, the order swapped every other pair.

Over the run window (counters reset just before the ingester starts, read when the last frame
is final):

- commands per master: ``INFO commandstats`` of each master, all commands summed (those Lua
  scripts run included, as ``bench_batch.py``), less the benchmark's own ``XLEN`` polls and
  ``CONFIG RESETSTAT``; per label; the busiest master's share of all (1/3 is even) and the
  max/min ratio across the masters; each master's Redis CPU (``INFO cpu``) per label;
- the commands the replicas ran (the replication stream), summed, per label;
- commands on the queue Redis per label, and labels per RQ job (one ``BLMOVE`` or ``LMOVE``
  each);
- labels/s: labels / (last ``finalised_at`` - first ``opened_at``) over every shard's final
  stream.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import _redis_cpu  # noqa: E402
from bench_pipeline import _wait  # noqa: E402

from gtx_stream.ops.demo import labeler_accuracies, write_config  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.ops.supervisor import Supervisor  # noqa: E402
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.shards import owners  # noqa: E402
from tests.cluster_fixtures import LocalCluster  # noqa: E402

POLL_S = 0.1
OWN = ("config|resetstat",)  # the benchmark's own; its XLEN polls are counted and taken off


def _calls(node: redis.Redis) -> Counter[str]:
    stats = node.info("commandstats")
    calls = Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()})
    for own in OWN:
        calls.pop(own, None)
    return calls


def run_pipeline(
    cluster: LocalCluster, queue_url: str, workdir: Path, n_frames: int, n_labelers: int,
    batch: int, max_open: int, shards: int, aggregators: int, wait_replicas: int,
) -> dict[str, Any]:  # fmt: skip
    q = redis.Redis.from_url(queue_url, decode_responses=True)
    q.flushdb()
    keys = Keys("bench", shards=shards, cluster=True)
    video = workdir / f"bench-{n_frames}.avi"
    if not video.exists():
        truths = write_synthetic_video(video, n_frames, seed=0)
        write_truth_csv(workdir / "truth.csv", truths)
    accuracies = labeler_accuracies(n_labelers, (0.8, 1.0), seed=0)
    nodes = "redis://" + ",".join(f"127.0.0.1:{port}" for port in cluster.ports)
    config = workdir / f"bench-{shards}.toml"
    write_config(
        config,
        {"redis": {"url": nodes, "cluster": True, "queue_url": queue_url, "prefix": keys.prefix,
                   "wait_replicas": wait_replicas},
         "aggregator": {"tau": 0.99, "kappa": 5, "seed": 0, "max_open_frames": max_open,
                        "shards": shards}},
        [{"id": lab, "backend": "simulated", "accuracy": a, "seed": 0, "batch": batch}
         for lab, a in accuracies.items()],
    )  # fmt: skip
    r = cluster.client(decode_responses=True)
    masters = [port for port, _ in cluster.masters()]
    replicas = [p for p in cluster.ports if p not in masters]
    node = {p: redis.Redis(port=p, decode_responses=True) for p in cluster.ports}
    # which master holds each shard's final stream (polled) and each shard's state
    finals: dict[int, list[str]] = {p: [] for p in masters}
    for shard in keys.every_shard():
        finals[cluster.master_of_key(shard.final)].append(shard.final)
    shards_on = {p: len(f) for p, f in finals.items()}
    n_aggs = aggregators if shards > 1 else 1
    sup = Supervisor(config=config, log_dir=workdir / f"logs-{shards}-{time.monotonic_ns()}")
    ids = list(accuracies)
    aggs = [f"aggregator-{i}" for i in range(n_aggs)]
    polls: Counter[int] = Counter()

    def final_count() -> int:
        total = 0
        for port, streams in finals.items():
            pipe = node[port].pipeline(transaction=False)
            for stream in streams:
                pipe.xlen(stream)
            total += sum(pipe.execute())
            polls[port] += len(streams)
        return total

    try:
        for name in aggs:
            sup.start(name, "--log-level", "WARNING", "aggregator", "--consumer", name)
        for j, lab in enumerate(ids):
            sup.start(f"labeler-{j}", "--log-level", "WARNING", "labeler", "--id", lab)
        _wait(sup, lambda: set(ids) <= set(r.zrange(keys.live, 0, -1)), 90, "labelers live",
              POLL_S)  # fmt: skip
        if shards > 1:  # every shard owned
            _wait(sup, lambda: None not in owners(r, keys), 90, "shards owned", POLL_S)
        time.sleep(0.5)  # RQ workers registered and blocking on their queues
        cpu0 = {p: _redis_cpu(node[p]) for p in masters}
        for p in cluster.ports:
            node[p].config_resetstat()
        q.config_resetstat()
        ingester = sup.start("ingester", "ingest", str(video), "--truth",
                             str(workdir / "truth.csv"))  # fmt: skip
        _wait(sup, lambda: final_count() >= n_frames, 600, f"{n_frames} final", POLL_S)
        calls = {p: _calls(node[p]) for p in cluster.ports}
        queue_calls = _calls(q)
        cpu = {p: _redis_cpu(node[p]) - cpu0[p] for p in masters}
        with contextlib.suppress(Exception):
            assert ingester.process is not None
            ingester.process.wait(timeout=30)
    finally:
        codes = sup.stop_all()
    if any(c not in (0, None) for c in codes.values()):
        raise SystemExit(f"a service failed: {codes}")
    records: list[dict[str, str]] = [
        f for shard in keys.every_shard() for _, f in cast(list[Any], r.xrange(shard.final))
    ]
    dead = sum(r.xlen(shard.dead) for shard in keys.every_shard())
    r.close()
    if dead:
        raise SystemExit(f"{dead} dead letters")
    if len({f["frame_id"] for f in records}) != len(records):
        raise SystemExit("a frame was finalised twice")
    for p in masters:
        calls[p]["xlen"] -= polls[p]
    n_labels = sum(int(f["n_labels"]) for f in records)
    span = max(float(f["finalised_at"]) for f in records) - min(
        float(f["opened_at"]) for f in records
    )
    per_master = {p: sum(calls[p].values()) for p in masters}
    total = sum(per_master.values())
    return {
        "shards": shards,
        "aggregators": n_aggs,
        "frames": len(records),
        "labels": n_labels,
        "seconds": span,
        "labels_per_s": n_labels / span,
        "shards_per_master": {str(p): shards_on[p] for p in masters},
        "commands_per_master": {str(p): per_master[p] for p in masters},
        "commands_per_label_per_master": {str(p): per_master[p] / n_labels for p in masters},
        "commands_per_label": total / n_labels,
        "busiest_share": max(per_master.values()) / total,
        "max_min_ratio": max(per_master.values()) / max(1, min(per_master.values())),
        "redis_cpu_ms_per_label_per_master": {str(p): 1e3 * cpu[p] / n_labels for p in masters},
        "replica_commands_per_label": sum(sum(calls[p].values()) for p in replicas) / n_labels,
        "queue_commands_per_label": sum(queue_calls.values()) / n_labels,
        # each RQ job is one BLMOVE (or LMOVE) off a labeler's queue
        "labels_per_rq_job": n_labels / max(1, queue_calls["blmove"] + queue_calls["lmove"]),
        "top_commands_per_label_per_master": {
            str(p): {k: round(v / n_labels, 3) for k, v in calls[p].most_common(6)} for p in masters
        },
    }


FIGURES = ("labels_per_s", "busiest_share", "max_min_ratio", "commands_per_label",
           "queue_commands_per_label", "labels_per_rq_job")  # fmt: skip


def _phase(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _describe(out: dict[str, Any]) -> str:
    ports = list(out["commands_per_master"])
    masters = ", ".join(
        f"{p} ({out['shards_per_master'][p]} sh): {out['commands_per_master'][p]} = "
        f"{out['commands_per_label_per_master'][p]:.2f}/label, "
        f"cpu {out['redis_cpu_ms_per_label_per_master'][p]:.3f} ms/label"
        for p in ports
    )
    return (
        f"shards {out['shards']}: {out['frames']} frames, {out['labels']} labels in "
        f"{out['seconds']:.1f} s = {out['labels_per_s']:.0f} labels/s; masters {masters}; "
        f"busiest share {out['busiest_share']:.3f}, max/min {out['max_min_ratio']:.2f}, "
        f"all masters {out['commands_per_label']:.2f}/label, replicas "
        f"{out['replica_commands_per_label']:.2f}/label, queue Redis "
        f"{out['queue_commands_per_label']:.2f}/label, {out['labels_per_rq_job']:.1f} "
        f"labels per RQ job"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--labelers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=1, help="alternating runs of each kind")
    ap.add_argument("--shards-a", type=int, default=1, help="the baseline's shards")
    ap.add_argument("--shards-b", type=int, default=16)
    ap.add_argument("--aggregators", type=int, default=1, help="aggregator processes for B")
    ap.add_argument("--wait-replicas", type=int, default=1, help="redis.wait_replicas")
    ap.add_argument("--max-open-frames", type=int, default=512)
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    kinds = (args.shards_a, args.shards_b)
    runs: dict[int, list[dict[str, Any]]] = {s: [] for s in kinds}
    loads: list[tuple[float, float, float]] = [os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="gtx-bench-") as tmp, EmbeddedRedis() as queue:
        for pair in range(args.pairs):
            # alternate which kind goes first, so drift in the machine's load hits both
            for shards in kinds if pair % 2 == 0 else kinds[::-1]:
                _phase(f"pair {pair + 1}: {shards} shard(s), starting a fresh cluster")
                with LocalCluster() as cluster:
                    out = run_pipeline(cluster, queue.url, Path(tmp), args.frames,
                                       args.labelers, args.batch, args.max_open_frames,
                                       shards, args.aggregators, args.wait_replicas)  # fmt: skip
                out["load_average"] = os.getloadavg()
                loads.append(out["load_average"])
                runs[shards].append(out)
                _phase("  " + _describe(out))
    a, b = (runs[s] for s in kinds)
    ratios = {k: [y[k] / x[k] for x, y in zip(a, b, strict=True)]
              for k in ("labels_per_s", "busiest_share")}  # fmt: skip
    result = {"args": vars(args), "runs": {str(s): rs for s, rs in runs.items()},
              f"ratios_{kinds[1]}_to_{kinds[0]}": ratios, "load_averages": loads}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(
        f"{args.frames} frames, {args.labelers} instant labelers (batch {args.batch}), "
        f"3 masters + 3 replicas, wait_replicas {args.wait_replicas}, {args.pairs} pair(s)"
    )
    for rs in runs.values():
        for i, out in enumerate(rs):
            print(f"pair {i + 1}, " + _describe(out))
    for k in FIGURES:
        print(f"{k}: " + "; ".join(
            f"{s} shard(s) " + " / ".join(f"{o[k]:.3f}" for o in rs) for s, rs in runs.items()
        ))  # fmt: skip
    for k, xs in ratios.items():
        print(f"{k} {kinds[1]}/{kinds[0]}: " + " / ".join(f"{x:.2f}" for x in xs)
              + f" (median {statistics.median(xs):.2f})")  # fmt: skip
    print(f"load average (1, 5, 15 min) before and after each run: {loads}")


if __name__ == "__main__":
    main()
