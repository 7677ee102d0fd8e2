"""What an idle aggregator's budget give-back costs on a Redis Cluster: commands per second.

Run:  .venv/bin/python benchmarks/bench_budget_idle.py [--shards 16] [--seconds 10]
          [--budget 1000000] [--json]

One local Redis Cluster of 3 masters (``tests/cluster_fixtures.py``, no replicas) and one
in-process :class:`ShardedAggregator` owning every shard, run as the service runs it
(``ShardedAggregator.run`` in a thread; default settings but ``shards`` and ``budget``), with
nothing arriving. Three cases, each over ``--seconds`` after a 3 s warm-up (every shard's
first look done):

- ``unlimited``: no budget configured;
- ``far``: a budget of ``--budget``, no frame open;
- ``far, open``: the same budget and one frame open on each shard at least (opened by the
  ingester's own ``open_frame``, so its shard leased a chunk; one labeler is registered and
  none is live, so the frames wait, each shard holding its lease).

Per case two figures, both in commands per second:

- ``give-back``: the commands the give-back's looks sent (``ShardBudget.tend``: its reads
  and scripts, the pool watch's reads), counted at the client by a wrapper around the shards'
  budget client and script runner: exactly what the give-back costs; beside it what the same
  budget code sent for decisions (``combined``: the pool read when frames a sweep took are
  decided again);
- ``all``: what the 3 masters served (``INFO commandstats`` deltas summed over them, the INFO
  calls left out), beside the same for the baseline: the same aggregator with
  ``ShardBudget.tend`` made a no-op, run just before on the same cluster. Their difference is
  the give-back's cost too, but other work of an idle step (stream reads, shard ownership,
  sweeps) varies with the machine's load by more than it costs now. HMGET, the command of
  every read of the pool, is printed apart (here only the budget code sends it).

Runs on the code before the change too (its ``ShardBudget`` has no pool watch).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings  # noqa: E402
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator  # noqa: E402
from gtx_stream.pipeline.ingest.ingester import open_frame  # noqa: E402
from gtx_stream.store.budget_lease import ShardBudget  # noqa: E402
from gtx_stream.store.keys import Keys, shard_of  # noqa: E402
from gtx_stream.store.params import LabelerAccuracy, store  # noqa: E402
from tests.aggregator_harness import Capture  # noqa: E402
from tests.cluster_fixtures import LocalCluster  # noqa: E402

WARMUP = 3.0


class Counted:
    """A client (or pipeline, or script runner) whose commands are counted into ``tally``."""

    def __init__(self, inner: Any, tally: collections.Counter[str]) -> None:
        self._inner = inner
        self._tally = tally

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name == "pipeline":
            return lambda *a, **kw: Counted(attr(*a, **kw), self._tally)
        if name == "run":  # ScriptRunner: one EVALSHA a call
            return self._counting(attr, lambda calls: len(calls), "evalsha")
        if name == "run_one":
            return self._counting(attr, lambda call: 1, "evalsha")
        if name == "execute" or not callable(attr):
            return attr
        return self._counting(attr, lambda *a: 1, name)

    def _counting(self, fn: Any, n: Callable[..., int], what: str) -> Any:
        def call(*a: Any, **kw: Any) -> Any:
            self._tally[f"{what} ({_caller()})"] += n(*a)
            return fn(*a, **kw)

        return call


def _caller() -> str:
    """``give-back`` when a give-back's look sent the command (``ShardBudget.tend``), else the
    ``ShardBudget`` method that did (``combined``: a decision's read of the pool)."""
    frame = sys._getframe(2)
    names = []
    while frame is not None and len(names) < 12:
        names.append(frame.f_code.co_name)
        frame = frame.f_back  # type: ignore[assignment]
    if "tend" in names:
        return "give-back"
    return next((n for n in names if n in OTHERS), "other")


OTHERS = ("combined", "sources_left", "cover", "cover_sources", "lease", "lease_source")


def commandstats(cluster: LocalCluster) -> dict[str, int]:
    """Calls per command, summed over the masters."""
    total: dict[str, int] = collections.Counter()
    for port, _ in cluster.masters():
        with cluster.node(port) as node:
            for name, stats in node.info("commandstats").items():
                total[name.removeprefix("cmdstat_")] += int(stats["calls"])
    return total


def measure(
    cluster: LocalCluster, a: argparse.Namespace, budget: int, open_frames: bool, tend: bool
) -> dict[str, Any]:
    """Commands per second of one idle aggregator: by the budget code, and on the masters."""
    for port, _ in cluster.masters():
        with cluster.node(port) as node:
            node.flushall()
    r = cluster.client(decode_responses=True)
    keys = Keys("gtx", shards=a.shards, cluster=True)
    tally: collections.Counter[str] = collections.Counter()
    original_init, original_tend = ShardBudget.__init__, ShardBudget.tend

    def counted_init(self: ShardBudget, *args: Any, **kw: Any) -> None:
        original_init(self, *args, **kw)
        self.r, self.runner = Counted(self.r, tally), Counted(self.runner, tally)  # type: ignore[assignment]
        pool = getattr(self, "pool", None)  # the pool watch (none before the change)
        if pool is not None and not isinstance(pool.r, Counted):
            pool.r = Counted(pool.r, tally)

    ShardBudget.__init__ = counted_init  # type: ignore[method-assign]
    if not tend:
        ShardBudget.tend = lambda self, *args, **kw: 0  # type: ignore[method-assign]
    stop = threading.Event()
    try:
        agg = ShardedAggregator(r, keys, AggregatorSettings(shards=a.shards, budget=budget),
                                consumer="agg", enqueue=Capture())  # fmt: skip
        agg.setup()
        # registered, none live: an open frame waits for one (none registered: it would be
        # finalised "exhausted" at once)
        store(r, keys, {"ann": LabelerAccuracy.given(0.9, "config")})
        k = 0  # frames opened
        if open_frames:  # frames opened until every shard has one at least
            shards: set[int] = set()
            while len(shards) < a.shards:
                shards.add(shard_of(f"cam-{k}", a.shards))
                code = open_frame(r, keys, source="cam", source_id="cam", frame_index=k,
                                  jpeg=b"x", ttl=3600, max_open_frames=10**6,
                                  reserve_per_frame=4)  # fmt: skip
                assert code == "opened", code
                k += 1
        thread = threading.Thread(target=agg.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(WARMUP)
        before, sent, t0 = commandstats(cluster), dict(tally), time.monotonic()
        time.sleep(a.seconds)
        after, t1 = commandstats(cluster), time.monotonic()
        still_open = sum(int(r.zcard(k.open_frames)) for k in keys.every_shard())
        sent = {c: n - sent.get(c, 0) for c, n in tally.items() if n > sent.get(c, 0)}
    finally:
        stop.set()
        ShardBudget.__init__, ShardBudget.tend = original_init, original_tend  # type: ignore[method-assign]
    thread.join(timeout=10)
    r.close()
    seconds = t1 - t0
    served = {c: (n - before.get(c, 0)) / seconds for c, n in after.items()
              if c != "info" and n > before.get(c, 0)}  # fmt: skip
    give = {c: n for c, n in sent.items() if c.endswith("(give-back)")}
    assert still_open == k, f"{still_open} frames open of {k}"
    return {
        "give_back": sum(give.values()) / seconds,
        "budget_by_command": {c: n / seconds for c, n in sorted(sent.items())},
        "all": sum(served.values()),
        "all_by_command": dict(sorted(served.items())),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--budget", type=int, default=1_000_000)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    cases = [("unlimited", 0, False), ("far", a.budget, False), ("far, open", a.budget, True)]
    out: dict[str, Any] = {}
    with LocalCluster(replicas=0) as cluster:
        for name, budget, opened in cases:
            base = measure(cluster, a, budget, opened, tend=False)
            out[name] = {"aggregator": measure(cluster, a, budget, opened, tend=True),
                         "baseline": base}  # fmt: skip
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"idle aggregator owning {a.shards} shards, {a.seconds:g} s per case; commands/s "
          f"(baseline: ShardBudget.tend a no-op)")  # fmt: skip
    for name, res in out.items():
        now, base = res["aggregator"], res["baseline"]
        hmget = (now["all_by_command"].get("hmget", 0), base["all_by_command"].get("hmget", 0))
        by = ", ".join(f"{c} {x:.1f}" for c, x in now["budget_by_command"].items()) or "none"
        print(
            f"{name:10s} give-back {now['give_back']:5.1f} (budget code: {by}); masters served "
            f"{now['all']:6.1f}, baseline {base['all']:6.1f} (difference "
            f"{now['all'] - base['all']:+5.1f}); HMGET {hmget[0]:.1f}, baseline {hmget[1]:.1f}"
        )


if __name__ == "__main__":
    main()
