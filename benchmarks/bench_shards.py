"""Sharded aggregators: aggregator CPU and Redis commands per label, and labels/s, with two
aggregators on two shards against one aggregator on one shard, in the same run.

Run:  .venv/bin/python benchmarks/bench_shards.py [--frames 2000] [--labelers 6]
          [--batch 16] [--pairs 2] [--max-open-frames 512] [--contended] [--also AxS] [--json]
      .venv/bin/python benchmarks/bench_shards.py --in-process [--frames 2000] [--pairs 2]

Each run is the whole pipeline of ``bench_batch.py`` (a synthetic video, the ingester, one
labeler worker process per instant ``simulated`` labeler, ``batch`` frames per request) on a
``redis-server`` of the benchmark's own, with either one ``gtx-stream aggregator`` at
``aggregator.shards = 1`` (the baseline: today's aggregator) or two at ``shards = 2`` (each
owns one shard once both are up; the ingester starts after that). The runs alternate,
``--pairs`` times. ``--contended`` adds a third kind per pair: two aggregators on one shard
(the shared consumer group of before).

- aggregator CPU per label: user + system CPU of the aggregator processes
  (``/proc/<pid>/stat``), summed, from just before the ingester starts to the last frame final;
- Redis commands per label: ``INFO commandstats`` over the same window (scripts' commands
  included), as ``bench_batch.py``;
- labels/s: labels / (last ``finalised_at`` - first ``opened_at``).

Ratios are 2-vs-1 of each pair, and their median. ``--in-process`` measures only the
aggregators' steps, in this one process (:func:`in_process`): the CPU per label without the
other processes' scheduling (still subject to the machine's load).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_batch import _cpu_seconds, _redis_cpu  # noqa: E402
from bench_pipeline import _wait, finished_run  # noqa: E402

from gtx_stream.ops.demo import labeler_accuracies, write_config  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.ops.supervisor import Supervisor  # noqa: E402
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.shards import owners  # noqa: E402


def run_pipeline(
    url: str, workdir: Path, n_frames: int, n_labelers: int, batch: int, max_open: int,
    aggregators: int, shards: int,
) -> dict[str, Any]:  # fmt: skip
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    keys = Keys("bench", shards=shards)
    video = workdir / f"bench-{n_frames}.avi"
    if not video.exists():
        truths = write_synthetic_video(video, n_frames, seed=0)
        write_truth_csv(workdir / "truth.csv", truths)
    accuracies = labeler_accuracies(n_labelers, (0.8, 1.0), seed=0)
    config = workdir / f"bench-{aggregators}-{shards}.toml"
    write_config(
        config,
        {"redis": {"url": url, "prefix": keys.prefix},
         "aggregator": {"tau": 0.99, "kappa": 5, "seed": 0, "max_open_frames": max_open,
                        "shards": shards}},
        [{"id": lab, "backend": "simulated", "accuracy": a, "seed": 0, "batch": batch}
         for lab, a in accuracies.items()],
    )  # fmt: skip
    sup = Supervisor(config=config, log_dir=workdir / f"logs-{aggregators}-{shards}")
    ids = list(accuracies)
    aggs = [f"aggregator-{i}" for i in range(aggregators)]
    try:
        for name in aggs:
            sup.start(name, "--log-level", "WARNING", "aggregator", "--consumer", name)
        for j, lab in enumerate(ids):
            sup.start(f"labeler-{j}", "--log-level", "WARNING", "labeler", "--id", lab)
        _wait(sup, lambda: set(ids) <= set(r.zrange(keys.live, 0, -1)), 60, "labelers live")
        if shards > 1:  # every shard owned, the aggregators' shares even
            share = -(-shards // aggregators)
            _wait(sup, lambda: None not in (o := owners(r, keys))
                  and max(o.count(a) for a in aggs) <= share, 60, "shards owned")  # fmt: skip
        time.sleep(0.5)  # RQ workers registered and blocking on their queues
        pids = {name: svc.process.pid for name, svc in sup.services.items() if svc.process}
        cpu0 = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        r.config_resetstat()
        redis0 = _redis_cpu(r)
        ingester = sup.start("ingester", "ingest", str(video), "--truth",
                             str(workdir / "truth.csv"))  # fmt: skip
        _wait(sup, lambda: bool(r.xlen(keys.final) >= n_frames), 900, f"{n_frames} final")
        stats = r.info("commandstats")
        redis_cpu = _redis_cpu(r) - redis0
        cpu = {name: _cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        owned = owners(r, keys) if shards > 1 else []
        with contextlib.suppress(Exception):
            assert ingester.process is not None
            ingester.process.wait(timeout=30)
    finally:
        codes = sup.stop_all()
    records, span, n_labels = finished_run(r, keys, codes)
    if len({f["frame_id"] for f in records}) != len(records):
        raise SystemExit("a frame was finalised twice")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    for own in ("config|resetstat", "info"):
        calls.pop(own, None)
    return {
        "aggregators": aggregators,
        "shards": shards,
        "owners": owned,
        "frames": len(records),
        "labels": n_labels,
        "seconds": span,
        "labels_per_s": n_labels / span,
        "aggregator_cpu_ms_per_label": 1e3 * sum(cpu[a] for a in aggs) / n_labels,
        "aggregator_cpu_ms_each": {a: round(1e3 * cpu[a] / n_labels, 3) for a in aggs},
        "redis_cpu_ms_per_label": 1e3 * redis_cpu / n_labels,
        "commands_per_label": sum(calls.values()) / n_labels,
        "top_commands_per_label": {
            k: round(v / n_labels, 4) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
        },
    }


def in_process(url: str, n_frames: int, n_labelers: int, shards: int) -> float:
    """Aggregator CPU per label (ms) of the steps alone, in this process (``time.process_time``
    around each step: no other process, no scheduler noise): one plain aggregator on one shard,
    or two sharded ones on ``shards`` shards owning half each, stepped in turn. Requests are
    answered between rounds by seeded simulated labels, one pipeline of XADDs per round."""
    from gtx_stream.config import AggregatorSettings
    from gtx_stream.core.draws import simulated_label
    from gtx_stream.core.records import LabelEntry, LabelRequest
    from gtx_stream.pipeline.aggregate.aggregator import Aggregator
    from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
    from gtx_stream.store import frame_scripts
    from gtx_stream.store.scripts import ScriptRunner

    r = redis.Redis.from_url(url)
    r.flushdb()
    keys = Keys("bench", shards=shards)
    acc = labeler_accuracies(n_labelers, (0.8, 1.0), seed=0)
    for lab, a in acc.items():
        r.hset(keys.labelers, lab, json.dumps({"accuracy": a, "source": "bench"}))
        r.zadd(keys.live, {lab: time.time() + 3600})
    pending: list[LabelRequest] = []
    s = AggregatorSettings(shards=shards, tau=0.99, kappa=5, max_open_frames=10**6)
    steps: list[Any]
    if shards == 1:
        one = Aggregator(
            r, keys, s, consumer="a0", enqueue=lambda c, k, reqs, ls: pending.extend(reqs)
        )
        one.setup()
        steps = [lambda: one.step(block_ms=0)]
    else:
        two = [ShardedAggregator(r, keys, s, consumer=f"a{i}",
                                 enqueue=lambda c, k, reqs, ls: pending.extend(reqs))
               for i in range(2)]  # fmt: skip
        for agg in two:
            agg.setup()
        for _ in range(3):  # the second one's share: the first gives half up
            for agg in two:
                agg.balance()
        steps = [agg.step for agg in two]
    runner = ScriptRunner(r)
    runner.run([
        frame_scripts.open_frame(
            keys, frame_id=f"s-{i}", frame_index=i, source="bench", source_id="s",
            opened_at=time.time(), ttl=3600, max_open_frames=10**6, reserve_per_frame=0,
            jpeg=b"jpeg", fields={"truth": str(i % 2)},
        )
        for i in range(n_frames)
    ])  # fmt: skip
    cpu, labels = 0.0, 0
    while r.zcard(keys.open_frames):
        for step in steps:
            began = time.process_time()
            step()
            cpu += time.process_time() - began
        pipe = r.pipeline(transaction=False)
        for req in pending:
            label = simulated_label(0, req.frame_id, req.labeler_id, int(req.frame_id[2:]) % 2,
                                    acc[req.labeler_id])  # fmt: skip
            entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
            pipe.xadd(keys.of_frame(req.frame_id).labels, entry.to_fields())  # type: ignore[arg-type]
        labels += len(pending)
        pending.clear()
        pipe.execute()
    r.flushdb()
    return 1e3 * cpu / labels


FIGURES = ("aggregator_cpu_ms_per_label", "commands_per_label", "labels_per_s")


def _phase(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--labelers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=2, help="alternating runs of each kind")
    ap.add_argument("--max-open-frames", type=int, default=512)
    ap.add_argument(
        "--contended",
        action="store_true",
        help="also two aggregators on one shard (the shared group of before)",
    )
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="AxS",
        help="one more kind per pair: A aggregators on S shards (e.g. 1x2)",
    )
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    ap.add_argument(
        "--in-process",
        action="store_true",
        help="only the in-process CPU per label of the steps (no processes)",
    )
    args = ap.parse_args()
    if args.in_process:
        with EmbeddedRedis() as server:
            for pair in range(args.pairs):
                one = in_process(server.url, args.frames, args.labelers, 1)
                two = in_process(server.url, args.frames, args.labelers, 2)
                print(f"in process, pair {pair + 1}: aggregator CPU per label 1x1 {one:.3f} ms, "
                      f"2x2 {two:.3f} ms, ratio {two / one:.2f}", flush=True)  # fmt: skip
        return
    kinds = [(1, 1), (2, 2)] + ([(2, 1)] if args.contended else [])
    kinds += [(int(a), int(s)) for a, s in (kind.split("x") for kind in args.also)]
    runs: dict[str, list[dict[str, Any]]] = {f"{a}x{s}": [] for a, s in kinds}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as server:
        for pair in range(args.pairs):
            # alternate which kind goes first, so drift in the machine's load hits both
            order = kinds if pair % 2 == 0 else kinds[::-1]
            for a, s in order:
                _phase(f"pair {pair + 1}: {a} aggregator(s), {s} shard(s)")
                out = run_pipeline(server.url, Path(tmp), args.frames, args.labelers,
                                   args.batch, args.max_open_frames, a, s)  # fmt: skip
                runs[f"{a}x{s}"].append(out)
                _phase("  " + ", ".join(f"{k} {out[k]:.3f}" for k in FIGURES))
    ratios = {
        name: {k: [b[k] / a[k] for a, b in zip(runs["1x1"], runs[name], strict=True)]
               for k in FIGURES}
        for name in runs if name != "1x1"
    }  # fmt: skip
    result = {"frames": args.frames, "labelers": args.labelers, "batch": args.batch,
              "runs": runs, "ratios_to_1x1": ratios}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.frames} frames, {args.labelers} instant labelers (batch {args.batch}), "
          f"{args.pairs} alternating pairs")  # fmt: skip
    for k in FIGURES:  # one block per figure: a row per kind, one value per pair
        print(f"{k}:")
        for name, outs in runs.items():
            print(f"  {name:<10}" + " / ".join(f"{o[k]:.3f}" for o in outs))
        for name, per in ratios.items():
            xs = per[k]
            ratio = " / ".join(f"{x:.2f}" for x in xs)
            print(f"  {name + ' / 1x1':<10}{ratio}  (median {statistics.median(xs):.2f})")


if __name__ == "__main__":
    main()
