"""Labels per second through one aggregator, and label-to-finalisation latency.

Run:  .venv/bin/python benchmarks/bench_aggregator.py [--frames 4000] [--batch 256]

Throughput: N frames are opened and asked of 5 labelers each (max_inflight = kappa = 5),
their 5N labels are pre-loaded in the labels stream, then one aggregator consumes them all
(apply with Lua, posterior with the core math, finalise). The baseline, measured in the same
run on the same Redis, is the rate of pipelined EVALSHA calls of a trivial script in batches of
the same size: the floor for any design that makes one script call per label.

Latency: a producer thread writes labels at a fixed rate while the aggregator runs; for each
frame, the time from the arrival of the label that made it final (its ``labeled_at``) to its
``finalised_at`` in the final record. Median and p99.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings  # noqa: E402
from gtx_stream.core.draws import simulated_label  # noqa: E402
from gtx_stream.core.records import LabelEntry  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.pipeline.aggregate.aggregator import Aggregator  # noqa: E402
from gtx_stream.store import frame_scripts  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.scripts import ScriptRunner  # noqa: E402

LABELERS = {f"lab{j}": float(a) for j, a in enumerate(np.linspace(0.8, 1.0, 10))}


def _no_enqueue(*_: object) -> None:
    """Throughput counts the aggregator; RQ's own rate is the other benchmark's business."""


def prepare(r: redis.Redis, keys: Keys, n_frames: int, first: int = 0, seed: int = 0) -> list:
    """Open frames and record 5 requests each; return (frame, labeler, request id, label)."""
    for lab, a in LABELERS.items():
        r.hset(keys.labelers, lab, json.dumps({"accuracy": a}))
        r.zadd(keys.live, {lab: time.time() + 3600})
    runner = ScriptRunner(r)
    rng = np.random.default_rng(seed)
    ids = list(LABELERS)
    labels = []
    calls: list = []
    for i in range(first, first + n_frames):
        fid = f"bench-{i}"
        truth = int(rng.integers(0, 2))
        calls.append(frame_scripts.open_frame(
            keys, frame_id=fid, frame_index=i, source="bench", source_id="bench",
            opened_at=time.time(), ttl=3600, max_open_frames=10**9, reserve_per_frame=0,
            jpeg=b"", fields={"truth": str(truth)},
        ))  # fmt: skip
        chosen = [ids[k] for k in rng.permutation(len(ids))[:5]]
        for lab in chosen:
            rid = f"r-{i}-{lab}"
            calls.append(frame_scripts.ask(
                keys, frame_id=fid, labeler=lab, request_id=rid, n_labels=0, max_inflight=5,
                deadline=time.time() + 3600,
            ))  # fmt: skip
            labels.append((fid, lab, rid, simulated_label(seed, fid, lab, truth, LABELERS[lab])))
        if len(calls) > 2000:
            runner.run(calls)
            calls = []
    runner.run(calls)
    return labels


def label_fields(fid: str, lab: str, rid: str, label: int) -> dict:
    return LabelEntry(fid, lab, rid, label, time.time()).to_fields()


def feed(r: redis.Redis, keys: Keys, labels: list) -> None:
    pipe = r.pipeline(transaction=False)
    for fid, lab, rid, label in labels:
        pipe.xadd(keys.labels, label_fields(fid, lab, rid, label))
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()


def throughput(url: str, n_frames: int, batch: int) -> tuple[float, float]:
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    keys = Keys("bench")
    settings = AggregatorSettings(tau=0.99, kappa=5, max_inflight=5, batch_size=batch,
                                  sweep_seconds=3600, block_ms=1)  # fmt: skip
    agg = Aggregator(r, keys, settings, consumer="bench", enqueue=_no_enqueue)
    agg.setup()
    labels = prepare(r, keys, n_frames)
    feed(r, keys, labels)
    agg.step()  # warm the script cache
    t0 = time.perf_counter()
    done = 0
    while True:
        rep = agg.step(block_ms=1)
        done += rep.labels_read
        if rep.labels_read == 0:
            break
    agg_rate = (done + batch) / (time.perf_counter() - t0)
    # with 5 requests out at once, labels that arrive after their frame was final are
    # dead-lettered: every label is still handled exactly once
    applied = int(r.hget(keys.stats, "labels_applied") or 0)
    assert applied + r.xlen(keys.dead) == len(labels), (applied, len(labels))

    sha = r.script_load("return 1")
    n = len(labels)
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(batch, n - start)):
            pipe.evalsha(sha, 1, keys.stats, "x")
        pipe.execute()
    base_rate = n / (time.perf_counter() - t0)
    return agg_rate, base_rate


def latency(url: str, n_frames: int, rate: float) -> tuple[float, float, int]:
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    keys = Keys("lat")
    settings = AggregatorSettings(tau=0.99, kappa=5, max_inflight=5, sweep_seconds=3600,
                                  block_ms=5)  # fmt: skip
    agg = Aggregator(r, keys, settings, consumer="lat", enqueue=_no_enqueue)
    agg.setup()
    labels = prepare(r, keys, n_frames, seed=1)
    stop = threading.Event()
    worker = threading.Thread(target=agg.run, args=(stop,))
    worker.start()
    producer = redis.Redis.from_url(url)
    t0 = time.perf_counter()
    for i, (fid, lab, rid, label) in enumerate(labels):
        while time.perf_counter() - t0 < i / rate:
            time.sleep(0.0005)
        producer.xadd(keys.labels, label_fields(fid, lab, rid, label))
    deadline = time.time() + 30
    while r.zcard(keys.open_frames) and time.time() < deadline:
        time.sleep(0.01)
    stop.set()
    worker.join()
    arrivals: dict[tuple[str, str], float] = {}
    for _, f in r.xrange(keys.labels):
        arrivals[(f["frame_id"], f["labeler"])] = float(f["labeled_at"])
    lat = []
    for _, f in r.xrange(keys.final):
        labs = json.loads(f["labelers"])
        if not labs:
            continue
        last = arrivals[(f["frame_id"], labs[-1])]
        lat.append(float(f["finalised_at"]) - last)
    lat.sort()
    return statistics.median(lat), lat[int(0.99 * (len(lat) - 1))], len(lat)


def main() -> None:
    logging.getLogger("gtx_stream").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--rate", type=float, default=2000.0, help="labels/s in the latency run")
    args = ap.parse_args()
    with EmbeddedRedis() as server:
        agg_rate, base_rate = throughput(server.url, args.frames, args.batch)
        p50, p99, n = latency(server.url, args.frames // 4, args.rate)
    print(f"aggregator:          {agg_rate:10.0f} labels/s  ({args.frames * 5} labels, "
          f"batch {args.batch})")  # fmt: skip
    print(f"pipelined EVALSHA:   {base_rate:10.0f} calls/s  (trivial script, same batch)")
    print(f"ratio aggregator / baseline: {agg_rate / base_rate:.2f}  (target >= 0.5)")
    print(f"label -> final latency at {args.rate:.0f} labels/s over {n} frames: "
          f"median {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
