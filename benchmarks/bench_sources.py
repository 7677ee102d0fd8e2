"""Eight sources on one pipeline, one of them bursting: the steady sources' latency and drops.

Run:  .venv/bin/python benchmarks/bench_sources.py [--seconds 12] [--repeat 3] [--redis URL]

Seven steady cameras open a frame every 0.5 s each; an eighth bursts at 300 frames/s for 4 s
from second 3 (more than the labelers can answer). Cameras drop a frame that cannot be opened
(the ingester's rule for live sources). Labeling capacity is bounded: 5 in-process labelers,
each answering one request at a time after 10 ms (500 labels/s in all, FIFO per labeler, as
RQ queues are), right with probability 0.9 (seeded); tau 0.99, kappa 5; the real Aggregator
decides and dispatches (``aggregator.max_open_frames = 64``). Three runs, each under a key
prefix of its own:

- ``no burst``: the baseline, measured in the same run;
- ``burst, shared bound``: ``ingest.max_open_per_source = 0``: the burst may take every one of
  the 64 open slots;
- ``burst, bound per source``: ``ingest.max_open_per_source = 8``.

The three runs alternate ``--repeat`` times; figures are medians over the repeats. Per run:
the steady sources' latency (finalised_at - opened_at) median and 95th percentile, and their
frames dropped, with ratios to the baseline; and the bursting source's frames opened.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings  # noqa: E402
from gtx_stream.core.draws import simulated_label  # noqa: E402
from gtx_stream.core.records import LabelEntry, LabelRequest  # noqa: E402
from gtx_stream.pipeline.aggregate.aggregator import Aggregator  # noqa: E402
from gtx_stream.pipeline.ingest.ingester import open_frame  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402

LABELERS, SERVICE_S, ACCURACY = 5, 0.010, 0.9
STEADY, STEADY_PERIOD = 7, 0.5
BURST_AT, BURST_FOR, BURST_FPS = 3.0, 4.0, 300.0


class Labelers:
    """One FIFO queue and one thread per labeler: each request answered after SERVICE_S."""

    def __init__(self, r: redis.Redis, keys: Keys, stop: threading.Event) -> None:
        self.r, self.keys, self.stop = r, keys, stop
        self.queues = {f"lab{i}": queue.Queue[LabelRequest]() for i in range(LABELERS)}
        self.threads = [threading.Thread(target=self._serve, args=(lid,), daemon=True)
                        for lid in self.queues]  # fmt: skip

    def enqueue(self, client: redis.Redis, keys: Keys, requests: list[LabelRequest],
                lease: float) -> None:  # fmt: skip
        for req in requests:
            self.queues[req.labeler_id].put(req)

    def _serve(self, lid: str) -> None:
        q = self.queues[lid]
        while not self.stop.is_set():
            try:
                req = q.get(timeout=0.1)
            except queue.Empty:
                continue
            time.sleep(SERVICE_S)
            truth = int(req.frame_id.rsplit("-", 1)[1]) % 2
            label = simulated_label(0, req.frame_id, lid, truth, ACCURACY)
            entry = LabelEntry(req.frame_id, lid, req.request_id, label)
            self.r.xadd(self.keys.labels, entry.to_fields())  # type: ignore[arg-type]


def camera(r: redis.Redis, keys: Keys, sid: str, times: list[float], t0: float,
           per_source: int, dropped: dict[str, int], stop: threading.Event) -> None:  # fmt: skip
    for i, at in enumerate(times):
        wait = t0 + at - time.time()
        if wait > 0 and stop.wait(wait):
            return
        code = open_frame(r, keys, source=f"cam://{sid}", source_id=sid, frame_index=i,
                          jpeg=b"j", ttl=600, max_open_frames=64, reserve_per_frame=0,
                          max_open_per_source=per_source)  # fmt: skip
        if code == "full":
            dropped[sid] = dropped.get(sid, 0) + 1


def run(r: redis.Redis, name: str, seconds: float, burst: bool, per_source: int,
        slots: int = 0) -> dict:  # fmt: skip
    keys = Keys(f"bench-sources-{name.replace(' ', '-').replace(',', '')}")
    for k in r.scan_iter(f"{keys.prefix}:*"):
        r.delete(k)
    stop = threading.Event()
    labs = Labelers(r, keys, stop)
    for lid in labs.queues:
        r.hset(keys.labelers, lid, f'{{"accuracy": {ACCURACY}, "source": "config"}}')
        r.zadd(keys.live, {lid: time.time() + 3600})
    settings = AggregatorSettings(tau=0.99, kappa=5, max_open_frames=64, block_ms=5,
                                  labeler_slots=slots)  # fmt: skip
    agg = Aggregator(r, keys, settings, consumer="bench", enqueue=labs.enqueue)  # type: ignore[arg-type]
    agg.setup()
    threads = [threading.Thread(target=agg.run, args=(stop,), daemon=True), *labs.threads]
    dropped: dict[str, int] = {}
    t0 = time.time() + 0.5
    steady_times = list(np.arange(0.0, seconds - 2.0, STEADY_PERIOD))
    for s in range(STEADY):
        offset = s * STEADY_PERIOD / STEADY
        threads.append(threading.Thread(target=camera, daemon=True, args=(
            r, keys, f"steady{s}", [t + offset for t in steady_times], t0, per_source, dropped,
            stop)))  # fmt: skip
    if burst:
        times = list(BURST_AT + np.arange(0.0, BURST_FOR, 1.0 / BURST_FPS))
        threads.append(threading.Thread(target=camera, daemon=True,
                                        args=(r, keys, "burst", times, t0, per_source, dropped,
                                              stop)))  # fmt: skip
    for t in threads:
        t.start()
    time.sleep(seconds + 0.5)
    deadline = time.time() + 10  # let the open frames finish
    while r.zcard(keys.open_frames) and time.time() < deadline:
        time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    lat: dict[str, list[float]] = {}
    for _, f in r.xrange(keys.final, "-", "+"):
        sid = f[b"frame_id"].decode().rsplit("-", 1)[0]
        lat.setdefault(sid, []).append(float(f[b"finalised_at"]) - float(f[b"opened_at"]))
    steady = np.array([x for sid, xs in lat.items() if sid.startswith("steady") for x in xs])
    out = {
        "name": name,
        "p50": float(np.median(steady)) * 1e3,
        "p95": float(np.percentile(steady, 95)) * 1e3,
        "steady_final": len(steady),
        "steady_dropped": sum(v for k, v in dropped.items() if k.startswith("steady")),
        "burst_final": len(lat.get("burst", [])),
        "burst_dropped": dropped.get("burst", 0),
    }
    for k in r.scan_iter(f"{keys.prefix}:*"):
        r.delete(k)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--bound", type=int, default=8, help="max_open_per_source of the third run")
    ap.add_argument("--slots", type=int, default=1, help="labeler_slots of the last two runs")
    ap.add_argument("--repeat", type=int, default=3, help="alternating repeats of the runs")
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    bounded = f"burst, bound {args.bound} per source"
    fair = f"{bounded}, {args.slots} slot(s)"
    configs = [("no burst", False, 0, 0), ("burst, shared bound", True, 0, 0),
               (bounded, True, args.bound, 0), (f"no burst, {args.slots} slot(s)", False, 0,
               args.slots), (fair, True, args.bound, args.slots)]  # fmt: skip
    results: dict[str, list[dict]] = {name: [] for name, *_ in configs}
    for rep in range(args.repeat):
        for name, burst, bound, slots in configs:
            results[name].append(run(r, name, args.seconds, burst, bound, slots))
            print(f"repeat {rep + 1}/{args.repeat}: {name} done", file=sys.stderr)
    med = {name: {k: float(np.median([o[k] for o in outs])) for k in outs[0] if k != "name"}
           for name, outs in results.items()}  # fmt: skip
    base = med["no burst"]
    print(f"{'run (medians of ' + str(args.repeat) + ')':<40}{'steady p50 ms':>14}{'p95 ms':>9}"
          f"{'x base p50':>11}{'x base p95':>11}{'steady final':>13}{'dropped':>8}"
          f"{'burst final':>12}{'dropped':>8}")  # fmt: skip
    for name, o in med.items():
        print(f"{name:<40}{o['p50']:>14.1f}{o['p95']:>9.1f}{o['p50'] / base['p50']:>11.2f}"
              f"{o['p95'] / base['p95']:>11.2f}{o['steady_final']:>13.0f}"
              f"{o['steady_dropped']:>8.0f}{o['burst_final']:>12.0f}"
              f"{o['burst_dropped']:>8.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
