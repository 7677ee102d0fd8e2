"""One aggregator sweep at 1,000 / 10,000 / 50,000 open frames: the old walk against the new
time-ordered sets, in the same run, on the same Redis; then sweeps once a second over
``--over`` seconds, stalled frames decided again every sweep against pushed back.

Run:  .venv/bin/python benchmarks/bench_sweep.py [--sizes 1000 10000 50000] [--stalled 0 0.01]
      [--over 120]

Each size and stalled share gets a fresh prefix: N frames opened with ``open_frame.lua``; all
but the stalled share of them asked of one live labeler (``ask.lua``, lease an hour away), the
busy pipeline's steady state; the stalled ones may only be labeled by a labeler that is
registered but not live, so every sweep finds them and asks nobody (an outage of that labeler).
Nothing a sweep does changes the state, so each sweep is timed again on the same state.

- old: what ``Aggregator.step`` did every ``sweep_seconds``: every open frame
  (``Sweeper.walk_open_frames``) read and decided again (``read_frames`` and the ``Decider``);
- new: ``Sweeper.expire_leases`` and ``Sweeper.open_frames`` (the due frames of ``waiting``,
  at most ``MAX_DUE``), and the same decision of what they return, each frame taken due again
  at the next sweep (no stall delay: what every sweep did before the delay).

Over time (every size and share; with none stalled, the baseline): ``--over`` sweeps, a clock
moved on one second a sweep, of the sweep without a stall delay (each stalled frame decided
every sweep) and then of the aggregator's own sweeper (stalled frames pushed back from
``sweep_seconds`` to ``stall_max_seconds``, waking on changes it watches, those reads
included); then one sweep after new parameters are written (the wake: every stalled frame due
again at once), and the sweeps that follow it back to back, as the aggregator's next steps make
them while a sweep left due work, until none is left ("wake, until done": its whole cost).

Both run the aggregator's own ``_decide``, so the decision costs the same per frame; the median
of ``--repeats`` sweeps (the old walk at most 3 times at 50,000). The one-time seeding walk
(an aggregator upgraded on a Redis without ``waiting``) is timed once per size.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.pipeline.aggregate.aggregator import Aggregator  # noqa: E402
from gtx_stream.pipeline.aggregate.report import BatchReport  # noqa: E402
from gtx_stream.pipeline.aggregate.sweeper import MAX_DUE, Sweeper  # noqa: E402
from gtx_stream.store import frame_scripts  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.scripts import ScriptRunner  # noqa: E402

LIVE = [f"lab{j}" for j in range(10)]
GONE = "ghost"  # registered, never live: the stalled frames' only labeler


def _no_enqueue(*_: object) -> None:
    """Nothing is asked in a timed sweep; the enqueue is not what is measured."""


def prepare(r: redis.Redis, keys: Keys, n: int, n_stalled: int) -> None:
    for lab in [*LIVE, GONE]:
        r.hset(keys.labelers, lab, json.dumps({"accuracy": 0.9}))
    r.zadd(keys.live, dict.fromkeys(LIVE, time.time() + 3600))
    runner = ScriptRunner(r)
    calls: list = []
    for i in range(n):
        fid = f"bench-{i}"
        stalled = i < n_stalled
        fields = {"truth": "1", **({"eligible": json.dumps([GONE])} if stalled else {})}
        calls.append(frame_scripts.open_frame(
            keys, frame_id=fid, frame_index=i, source="bench", source_id="bench",
            opened_at=time.time(), ttl=7200, max_open_frames=10**9, reserve_per_frame=0,
            jpeg=b"", fields=fields,
        ))  # fmt: skip
        if not stalled:
            calls.append(frame_scripts.ask(
                keys, frame_id=fid, labeler=LIVE[i % len(LIVE)], request_id=f"r-{i}",
                n_labels=0, max_inflight=1, deadline=time.time() + 3600,
            ))  # fmt: skip
        if len(calls) >= 4000:
            runner.run(calls)
            calls = []
    runner.run(calls)


def old_sweep(agg: Aggregator) -> int:
    touched = agg.sweeper.expire_leases() | set(agg.sweeper.walk_open_frames())
    agg._decide(sorted(touched), {}, agg.budget_left(), BatchReport())
    return len(touched)


def new_sweep(agg: Aggregator) -> int:
    touched = agg.sweeper.expire_leases() | agg.sweeper.open_frames()
    if touched:
        agg._decide(sorted(touched), {}, agg.budget_left(), BatchReport())
    return len(touched)


def timed(fn, agg: Aggregator, repeats: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    times, n = [], 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = fn(agg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), n


class Clock:
    """Unix seconds, moved on by hand: a sweep a second without waiting a second."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def over_time(
    agg: Aggregator, sweeper: Sweeper, clock: Clock, sweeps: int
) -> list[tuple[float, float, int]]:
    """Seconds, this process's CPU seconds and frames decided of each of ``sweeps`` sweeps, one
    a second on ``clock``."""
    agg.sweeper, sweeper.clock = sweeper, clock
    out = []
    for _ in range(sweeps):
        t0, c0 = time.perf_counter(), time.process_time()
        n = new_sweep(agg)
        out.append((time.perf_counter() - t0, time.process_time() - c0, n))
        clock.now += agg.s.sweep_seconds
    return out


def _summary(sweeps: list[tuple[float, float, int]]) -> dict[str, float]:
    times = [t for t, _, _ in sweeps]
    ordered, later = sorted(times), times[len(times) // 2 :]
    return {"median": statistics.median(times), "p99": ordered[int(0.99 * (len(times) - 1))],
            "max": ordered[-1], "mean": statistics.fmean(times), "later": statistics.fmean(later),
            "cpu": statistics.fmean(c for _, c, _ in sweeps),
            "frames": statistics.fmean(n for _, _, n in sweeps)}  # fmt: skip


def bench_over_time(r: redis.Redis, keys: Keys, agg: Aggregator, sweeps: int) -> dict[str, Any]:
    runner, clock = ScriptRunner(r), Clock()
    every = over_time(agg, Sweeper(r, keys, runner, clock=clock), clock, sweeps)
    backed = over_time(agg, Sweeper.for_aggregator(r, keys, runner, agg.s, agg.labelers), clock,
                       sweeps)  # fmt: skip
    r.hset(keys.labelers, GONE, json.dumps({"accuracy": 0.91}))  # as the estimator would
    time.sleep(1.05)  # the labelers' parameters are re-read once a second
    wake = over_time(agg, agg.sweeper, clock, 1)
    # the aggregator sweeps again at its next step while a sweep left due work: those sweeps,
    # back to back on the same clock, until none is left (the wake's whole cost)
    drain = list(wake)
    while agg.sweeper.backlog and len(drain) < 1000:
        drain += over_time(agg, agg.sweeper, clock, 1)
        clock.now -= agg.s.sweep_seconds  # within the same second: the next steps
    summary = _summary(drain)
    summary.update(sweeps=len(drain), total=sum(t for t, _, _ in drain),
                   decided=sum(n for _, _, n in drain))  # fmt: skip
    return {"every sweep": _summary(every), "pushed back": _summary(backed),
            "wake (new parameters)": _summary(wake), "wake, until done": summary}  # fmt: skip


def bench_size(url: str, n: int, stalled: float, repeats: int, sweeps: int = 0) -> dict[str, Any]:
    r = redis.Redis.from_url(url)
    keys = Keys(f"bench-sweep-{n}")
    n_stalled = int(n * stalled)
    prepare(r, keys, n, n_stalled)
    agg = Aggregator(r, keys, AggregatorSettings(), consumer="bench", enqueue=_no_enqueue)
    agg.setup()
    agg.sweeper = Sweeper(r, keys, agg.runner)  # without a stall delay: same state each sweep
    r.delete(keys.waiting_seeded)  # time the one-time walk of an upgraded aggregator
    t0 = time.perf_counter()
    walked = agg.sweeper.seed_waiting()
    seed_s = time.perf_counter() - t0
    assert walked == n, walked
    # the seeding put the frames with a request out in waiting too; in a pipeline each leaves
    # at its next granted ask: take them out here, to time the steady state
    r.zrem(keys.waiting, *[f"bench-{i}" for i in range(n_stalled, n)])
    new_sweep(agg)  # warm: the labelers' parameters are read once a second
    new_s, new_n = timed(new_sweep, agg, repeats)
    old_s, old_n = timed(old_sweep, agg, min(repeats, 3 if n >= 50_000 else repeats))
    assert (new_n, old_n) == (min(n_stalled, MAX_DUE), n), (new_n, old_n)
    timeline = bench_over_time(r, keys, agg, sweeps) if sweeps else None
    assert (
        r.zcard(keys.open_frames) == n
        and r.hget(keys.stats, "requests") == str(n - n_stalled).encode()
    )  # nothing was asked nor finalised: every sweep saw the same state
    for key in r.scan_iter(f"{keys.prefix}:*", count=10_000):
        r.delete(key)
    return {"n": n, "stalled": n_stalled, "old_s": old_s, "new_s": new_s, "seed_s": seed_s,
            "timeline": timeline}  # fmt: skip


def main() -> None:
    logging.getLogger("gtx_stream").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 50_000])
    ap.add_argument("--stalled", type=float, nargs="+", default=[0.0, 0.01],
                    help="shares of open frames waiting on a labeler that is not live")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--over", type=int, default=120,
                    help="sweeps, a simulated second apart, with stalled frames")  # fmt: skip
    ap.add_argument("--redis-url", default=None, help="default: an embedded redis-server")
    args = ap.parse_args()
    runs = [(n, share) for share in args.stalled for n in args.sizes]
    if args.redis_url:
        rows = [bench_size(args.redis_url, n, share, args.repeats, args.over) for n, share in runs]
    else:
        with EmbeddedRedis() as server:
            rows = [bench_size(server.url, n, share, args.repeats, args.over) for n, share in runs]
    print(f"{'open frames':>12} {'stalled':>8} {'old walk':>11} {'new sweep':>11} {'old/new':>9} "
          f"{'one-time seed':>14}")  # fmt: skip
    for row in rows:
        print(f"{row['n']:>12,} {row['stalled']:>8,} {row['old_s'] * 1e3:>8.1f} ms "
              f"{row['new_s'] * 1e3:>8.2f} ms {row['old_s'] / row['new_s']:>8.0f}x "
              f"{row['seed_s'] * 1e3:>11.1f} ms")  # fmt: skip
    timed_rows = [row for row in rows if row["timeline"]]
    if timed_rows:
        print(f"\nsweeps a simulated second apart, {args.over} of each sweeper; ms per sweep, "
              "frames decided per sweep; later: the mean of the second half; cpu: the mean of this "
              "process's CPU time (Redis's not counted)")  # fmt: skip
        print(f"{'open frames':>12} {'stalled':>8} {'sweeper':>22} {'median':>8} {'p99':>8} "
              f"{'max':>8} {'mean':>8} {'later':>8} {'cpu':>8} {'frames':>7}")  # fmt: skip
    for row in timed_rows:
        for name, t in row["timeline"].items():
            ms = " ".join(
                f"{t[q] * 1e3:>8.2f}" for q in ("median", "p99", "max", "mean", "later", "cpu")
            )
            print(f"{row['n']:>12,} {row['stalled']:>8,} {name:>22} {ms} {t['frames']:>7.1f}")
            if "sweeps" in t:
                print(f"{'':>12} {'':>8} {'':>22} {t['sweeps']} sweeps back to back decided "
                      f"{t['decided']} frames in {t['total'] * 1e3:.1f} ms in all")  # fmt: skip


if __name__ == "__main__":
    main()
