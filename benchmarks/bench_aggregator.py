"""Labels per second through one aggregator, and label-to-finalisation latency.

Run:  .venv/bin/python benchmarks/bench_aggregator.py [--frames 4000] [--batch 256]
          [--loop-frames 4000]

Throughput, "apply only": N frames are opened and asked of 5 labelers each (max_inflight =
kappa = 5) before timing, their 5N labels are pre-loaded in the labels stream, then one
aggregator consumes them all (apply with Lua, posterior with the core math, finalise). No
``ask.lua`` and no RQ enqueue run while it is timed.

Throughput, "ask per label + RQ enqueue": ``--loop-frames`` frames are opened (their entries
wait in the opened stream) and nobody is asked beforehand; the aggregator runs as in the
pipeline (max_inflight 1, kappa 5): it reads the opened entries and the labels, applies them,
decides, and asks one more labeler per open frame through its Requester (``ask.lua``), whose
granted requests become RQ jobs through the real enqueue (``enqueue_requests``). Between two
aggregator steps, this process answers every request as a labeler worker would: it takes the
jobs off each labeler's RQ queue with the worker's own ``take_requests`` (the jobs deleted,
the queues drained) and XADDs each request's label. Only the aggregator's steps are timed;
the answering is reported apart (wall time of the whole loop).

The baseline of both, measured in the same run on the same Redis, is the rate of pipelined
EVALSHA calls of a trivial script in batches of the same size: the floor for any design that
makes one script call per label.

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
from typing import Any

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings  # noqa: E402
from gtx_stream.core.draws import simulated_label  # noqa: E402
from gtx_stream.core.records import LabelEntry  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.pipeline.aggregate.aggregator import Aggregator  # noqa: E402
from gtx_stream.pipeline.label.batch import take_requests  # noqa: E402
from gtx_stream.pipeline.label.requests import enqueue_requests  # noqa: E402
from gtx_stream.store import frame_scripts  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.scripts import ScriptRunner  # noqa: E402

LABELERS = {f"lab{j}": float(a) for j, a in enumerate(np.linspace(0.8, 1.0, 10))}


def _no_enqueue(*_: object) -> None:
    """Throughput counts the aggregator; RQ's own rate is the other benchmark's business."""


def prepare(
    r: redis.Redis, keys: Keys, n_frames: int, first: int = 0, seed: int = 0, ask: bool = True
) -> tuple[list, dict[str, int]]:
    """Open frames and (``ask``) record 5 requests each; return (frame, labeler, request id,
    label) of each request, and each frame's truth."""
    for lab, a in LABELERS.items():
        r.hset(keys.labelers, lab, json.dumps({"accuracy": a}))
        r.zadd(keys.live, {lab: time.time() + 3600})
    runner = ScriptRunner(r)
    rng = np.random.default_rng(seed)
    ids = list(LABELERS)
    labels = []
    truths = {}
    calls: list = []
    for i in range(first, first + n_frames):
        fid = f"bench-{i}"
        truth = truths[fid] = int(rng.integers(0, 2))
        calls.append(frame_scripts.open_frame(
            keys, frame_id=fid, frame_index=i, source="bench", source_id="bench",
            opened_at=time.time(), ttl=3600, max_open_frames=10**9, reserve_per_frame=0,
            jpeg=b"", fields={"truth": str(truth)},
        ))  # fmt: skip
        chosen = [ids[k] for k in rng.permutation(len(ids))[:5]]
        for lab in chosen if ask else ():
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
    return labels, truths


def label_fields(fid: str, lab: str, rid: str, label: int) -> dict:
    return LabelEntry(fid, lab, rid, label, time.time()).to_fields()


def feed(r: redis.Redis, keys: Keys, labels: list) -> None:
    pipe = r.pipeline(transaction=False)
    for fid, lab, rid, label in labels:
        pipe.xadd(keys.labels, label_fields(fid, lab, rid, label))
        if len(pipe) >= 1000:
            pipe.execute()
    pipe.execute()


def fresh(url: str, prefix: str, **settings: Any) -> tuple[redis.Redis, Keys, AggregatorSettings]:
    """An emptied database, the keys of ``prefix``, and tau 0.99, kappa 5, no sweeps."""
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    return r, Keys(prefix), AggregatorSettings(tau=0.99, kappa=5, sweep_seconds=3600, **settings)


def throughput(url: str, n_frames: int, batch: int) -> tuple[float, float]:
    r, keys, settings = fresh(url, "bench", max_inflight=5, batch_size=batch, block_ms=1)
    agg = Aggregator(r, keys, settings, consumer="bench", enqueue=_no_enqueue)
    agg.setup()
    labels, _ = prepare(r, keys, n_frames)
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


def answer(r: redis.Redis, keys: Keys, truths: dict[str, int], seed: int) -> int:
    """Answer every request waiting in the labelers' RQ queues, as their workers would: the
    jobs taken off the queues (and deleted) by ``take_requests``, one label XADDed each.
    ``r`` without ``decode_responses``, as a worker's (RQ's job data is compressed bytes)."""
    n = 0
    with r.pipeline(transaction=False) as pipe:
        for lab, accuracy in LABELERS.items():
            while reqs := take_requests(r, keys, lab, 1000):
                for req in reqs:
                    fid = req.frame_id
                    label = simulated_label(seed, fid, lab, truths[fid], accuracy)
                    pipe.xadd(keys.labels, label_fields(fid, lab, req.request_id, label))
                n += len(reqs)
        pipe.execute()
    return n


def ask_loop(url: str, n_frames: int, batch: int) -> dict[str, float]:
    """The aggregator with an ask per label and the real RQ enqueue (see the module's doc)."""
    r, keys, settings = fresh(url, "loop", max_inflight=1, batch_size=batch, block_ms=1)
    spent = {"ask": 0.0, "enqueue": 0.0, "jobs": 0.0}

    def enqueue(client: redis.Redis, k: Keys, requests: list, lease: float) -> None:
        t = time.perf_counter()
        enqueue_requests(client, k, requests, lease)  # what the aggregator's default does
        spent["enqueue"] += time.perf_counter() - t
        spent["jobs"] += len(requests)

    agg = Aggregator(r, keys, settings, consumer="loop", enqueue=enqueue)
    agg.setup()
    real_ask = agg.requester.ask

    def timed_ask(slots: Any) -> int:
        t = time.perf_counter()
        try:
            return real_ask(slots)
        finally:
            spent["ask"] += time.perf_counter() - t

    agg.requester.ask = timed_ask  # type: ignore[method-assign]
    _, truths = prepare(r, keys, n_frames, seed=2, ask=False)
    worker = redis.Redis.from_url(url)
    # timed from the first step (the first asks happen there; loading the scripts is a few
    # round trips of the whole loop's thousands)
    steps_s = 0.0
    idle = 0
    wall = time.perf_counter()
    while r.zcard(keys.open_frames) and idle < 3:
        t = time.perf_counter()
        rep = agg.step(block_ms=1)
        steps_s += time.perf_counter() - t
        answered = answer(worker, keys, truths, seed=2)
        idle = idle + 1 if rep.labels_read == 0 and answered == 0 else 0
    wall = time.perf_counter() - wall
    left = r.zcard(keys.open_frames)
    assert left == 0, f"{left} frames still open with nothing asked"
    assert r.xlen(keys.dead) == 0, "dead letters"
    labels = int(r.hget(keys.stats, "labels_applied") or 0)
    jobs_left = sum(1 for _ in r.scan_iter("rq:job:*"))
    queued = sum(int(r.llen(f"rq:queue:{keys.queue(lab)}")) for lab in LABELERS)
    assert jobs_left == 0 and queued == 0, (jobs_left, queued)
    return {
        "labels": labels,
        "frames": int(r.xlen(keys.final)),
        "labels_per_s": labels / steps_s,
        "wall_labels_per_s": labels / wall,
        "ask_share": spent["ask"] / steps_s,
        "enqueue_share": spent["enqueue"] / steps_s,
        "jobs_per_label": spent["jobs"] / labels,
    }


def latency(url: str, n_frames: int, rate: float) -> tuple[float, float, int]:
    r, keys, settings = fresh(url, "lat", max_inflight=5, block_ms=5)
    agg = Aggregator(r, keys, settings, consumer="lat", enqueue=_no_enqueue)
    agg.setup()
    labels, _ = prepare(r, keys, n_frames, seed=1)
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
    ap.add_argument("--loop-frames", type=int, default=4000,
                    help="frames of the ask-per-label run (0: skip it)")  # fmt: skip
    args = ap.parse_args()
    with EmbeddedRedis() as server:
        agg_rate, base_rate = throughput(server.url, args.frames, args.batch)
        loop = ask_loop(server.url, args.loop_frames, args.batch) if args.loop_frames else None
        p50, p99, n = latency(server.url, args.frames // 4, args.rate)
    print(f"aggregator, apply only:            {agg_rate:10.0f} labels/s  ({args.frames * 5} "
          f"labels pre-asked, batch {args.batch})")  # fmt: skip
    if loop is not None:
        print(f"aggregator, ask per label + RQ:    {loop['labels_per_s']:10.0f} labels/s  "
              f"({loop['labels']:.0f} labels, {loop['frames']:.0f} frames; aggregator steps "
              f"only)")  # fmt: skip
        print(f"  of its time: requester {100 * loop['ask_share']:.0f}% (ask.lua + enqueue), "
              f"RQ enqueue {100 * loop['enqueue_share']:.0f}%; "
              f"{loop['jobs_per_label']:.2f} RQ jobs per label")  # fmt: skip
        print(f"  with the answering (take_requests + XADD) in the same loop: "
              f"{loop['wall_labels_per_s']:.0f} labels/s wall")  # fmt: skip
    print(f"pipelined EVALSHA:                 {base_rate:10.0f} calls/s  (trivial script, "
          f"same batch)")  # fmt: skip
    print(f"ratio apply only / baseline: {agg_rate / base_rate:.2f}  (target >= 0.5)")
    if loop is not None:
        print(f"ratio ask per label + RQ / baseline: {loop['labels_per_s'] / base_rate:.2f}; "
              f"/ apply only: {loop['labels_per_s'] / agg_rate:.2f}")  # fmt: skip
    print(f"label -> final latency at {args.rate:.0f} labels/s over {n} frames: "
          f"median {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
