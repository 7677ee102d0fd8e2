"""The estimator service's cost per fit (``gtx-stream estimator``), and that it stays bounded.

Run:  .venv/bin/python benchmarks/bench_estimator.py [--labels 100000 1000000] [--redis URL]

For each size N it writes N labels as final records (5 labelers per frame out of 100, seeded
accuracies 0.55-0.95, 20 gold answers each in the labelers' records) under a key prefix of its
own, then times, with ``estimator.window_labels = N``:

- the first fill: reading the window back from the final stream (XREVRANGE), once per start;
- a refit after 1% more frames: reading them, EM (one-coin; two-coin too with ``--two-coin``),
  writing the records; the part a running service repeats every ``every_seconds``.

Bounded: the same refit with the stream holding ``--grow`` times N labels and the window
still N: a fit reads only its window, so its time must not grow with the stream. The baseline,
measured in the same run on the same arrays, is one ``np.bincount`` pass over the window's
labels; ratios are times over it. Keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings, EstimatorSettings  # noqa: E402
from gtx_stream.core.records import FinalRecord  # noqa: E402
from gtx_stream.pipeline.estimate import Estimator  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.params import LabelerAccuracy, store  # noqa: E402

PER_FRAME, LABELERS = 5, 100


def write_finals(r: redis.Redis, keys: Keys, frames: int, start: int, rng: np.random.Generator,
                 acc: np.ndarray) -> None:  # fmt: skip
    pipe = r.pipeline(transaction=False)
    for i in range(start, start + frames):
        y = int(rng.integers(0, 2))
        who = (int(rng.integers(0, LABELERS)) + np.arange(PER_FRAME) * 7) % LABELERS
        labels = [y if rng.random() < acc[j] else 1 - y for j in who]
        rec = FinalRecord(frame_id=f"f{i}", label=y, p1=0.5, confidence=0.5, reason="kappa",
                          method="gtx", labelers=[f"w{j}" for j in who], labels=labels,
                          accuracies=[0.5] * PER_FRAME, finalised_at=time.time())  # fmt: skip
        pipe.xadd(keys.final, rec.to_fields())  # type: ignore[arg-type]
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()


def bincount_baseline(est: Estimator) -> float:
    index = {f"w{j}": j for j in range(LABELERS)}
    arrays = est.window.arrays(index)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        np.bincount(arrays.labeler, weights=arrays.label.astype(np.float64), minlength=LABELERS)
        best = min(best, time.perf_counter() - t)
    return best


def run(r: redis.Redis, n: int, grow: int, two_coin: bool) -> None:
    keys = Keys(f"bench-estimator-{os.getpid()}-{n}")
    rng = np.random.default_rng(n)
    acc = rng.uniform(0.55, 0.95, LABELERS)
    gold = {}
    for j in range(LABELERS):
        right = int(rng.binomial(20, acc[j]))
        gold[f"w{j}"] = LabelerAccuracy((right + 1) / 22, 0.0, 1.0, "assessment", 20, correct=right)
    store(r, keys, gold)
    frames = n // PER_FRAME
    agg = AggregatorSettings(model="two_coin" if two_coin else "one_coin")
    settings = EstimatorSettings(window_labels=n, min_labels=1)
    try:
        write_finals(r, keys, frames, 0, rng, acc)
        est = Estimator(r, keys, settings, agg)
        t = time.perf_counter()
        est.window.fill()
        first = time.perf_counter() - t
        base = bincount_baseline(est)
        est.fit_once()  # the first fit, from the gold records
        write_finals(r, keys, frames // 100, frames, rng, acc)
        t = time.perf_counter()
        report = est.fit_once()
        refit = time.perf_counter() - t
        assert report is not None
        print(f"{n:>9,} labels  first fill {first:6.2f} s  refit {refit:6.3f} s "
              f"(EM and write {report.seconds:6.3f} s, {report.iterations} iterations)  "
              f"bincount {base * 1e3:6.2f} ms  refit/bincount {refit / base:7.0f}")  # fmt: skip
        if grow > 1:
            write_finals(r, keys, frames * (grow - 1), frames + frames // 100, rng, acc)
            t = time.perf_counter()
            report = est.fit_once()
            grown = time.perf_counter() - t
            assert report is not None and report.labels <= n
            # the refit after the stream grew reads what was added since, once: time the next
            write_finals(r, keys, frames // 100, frames * grow + frames // 100, rng, acc)
            t = time.perf_counter()
            est.fit_once()
            steady = time.perf_counter() - t
            print(f"{'':>9}  stream {grow}x the window ({r.xlen(keys.final):,} frames): "
                  f"catch-up fit {grown:6.3f} s, next refit {steady:6.3f} s "
                  f"= {steady / refit:4.2f} x the refit above")  # fmt: skip
    finally:
        for key in r.scan_iter(f"{keys.prefix}:*"):
            r.delete(key)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--grow", type=int, default=3, help="stream size over window, last check")
    ap.add_argument("--two-coin", action="store_true", help="fit the two-coin model too")
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    for n in args.labels:
        run(r, n, args.grow if n == min(args.labels) else 1, args.two_coin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
