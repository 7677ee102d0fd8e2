"""The end of a budget on a Redis Cluster: how much of it is spent, and how much stays stranded
in shards that leased it and no longer need it.

Run:  .venv/bin/python benchmarks/bench_budget_end.py [--shards 16] [--budget 1000]
          [--frames 2000] [--share 0] [--kappa 4] [--tau 0.95] [--max-open 64]
          [--opens-per-round 4] [--seeds 1,2,3] [--json]

Each seed is one run on a fresh local Redis Cluster of 3 masters (``tests/cluster_fixtures.py``,
no replicas): one in-process :class:`ShardedAggregator` owning every shard, the ingester's own
``open_frame`` (so its leases and its waiting while frames hold the budget run as in the
service), and five seeded simulated labelers answering every request before the next
aggregator step. Frames are opened until the budget refuses one, ``--opens-per-round`` between
two steps; then the aggregator runs until every frame is final. With ``--share N`` the budget is
two sources' shares of N each (``aggregator.budget_per_source``) instead of ``--budget``.

It prints, per seed, labels spent against the budget (the baseline: what a single Redis spends,
every label of it), what the shards hold unspent at the end (stranded), the frames finalised
for ``budget`` while other shards held labels they did not need for their own open frames, and
whether any shard or the shards together spent more than they were given (overspent).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings  # noqa: E402
from gtx_stream.core.draws import simulated_label  # noqa: E402
from gtx_stream.core.records import LabelEntry  # noqa: E402
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator  # noqa: E402
from gtx_stream.pipeline.ingest.ingester import open_frame  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.params import LabelerAccuracy, store  # noqa: E402
from tests.aggregator_harness import Capture  # noqa: E402
from tests.cluster_fixtures import LocalCluster  # noqa: E402

ACC = {"ann": 0.9, "bob": 0.85, "cid": 0.8, "dee": 0.75, "eve": 0.7}


def run(a: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    sources = ["cam-a", "cam-b"] if a.share else ["cam"]
    with LocalCluster(replicas=0) as cluster:
        r = cluster.client(decode_responses=True)
        keys = Keys("gtx", shards=a.shards, cluster=True)
        s = AggregatorSettings(shards=a.shards, budget=0 if a.share else a.budget, kappa=a.kappa,
                               tau=a.tau, seed=seed, sweep_seconds=0.05, block_ms=1,
                               budget_per_source=a.share, max_open_frames=a.max_open)  # fmt: skip
        cap = Capture()
        agg = ShardedAggregator(r, keys, s, consumer="agg", enqueue=cap)
        agg.setup()
        store(r, keys, {lab: LabelerAccuracy.given(x, "config") for lab, x in ACC.items()})
        r.zadd(keys.live, {lab: 4e9 for lab in ACC})
        truth: dict[str, int] = {}
        seen = {k.shard: "-" for k in keys.every_shard()}
        short = 0  # frames finalised for budget while another shard held spare labels

        def spare_elsewhere(shard: int, suffix: str) -> int:
            spare = 0
            for other in keys.every_shard():
                if other.shard != shard:
                    b = r.hgetall(other.budget)
                    held = int(b.get("limit" + suffix, 0)) - int(b.get("spent" + suffix, 0))
                    spare += max(0, held - a.kappa * int(r.zcard(other.open_frames)))
            return spare

        def step() -> None:
            nonlocal short
            agg.step()
            for k in keys.every_shard():
                new = r.xrange(k.final, "(" + seen[k.shard] if seen[k.shard] != "-" else "-")
                if new:
                    seen[k.shard] = new[-1][0]
                for _, f in new:
                    src = f["frame_id"].rsplit("-", 1)[0]
                    if f["reason"] == "budget" and spare_elsewhere(
                        k.shard, f":{src}" if a.share else ""
                    ):
                        short += 1
            while cap.pending:
                req = cap.pending.pop(0)
                label = simulated_label(seed, req.frame_id, req.labeler_id, truth[req.frame_id],
                                        ACC[req.labeler_id])  # fmt: skip
                entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
                r.xadd(keys.of_frame(req.frame_id).labels, entry.to_fields())

        stopped: set[str] = set()
        for i in range(a.frames):
            for src in sources:
                if src in stopped:
                    continue
                fid = f"{src}-{i}"
                truth[fid] = rng.randrange(2)
                while (code := open_frame(
                    r, keys, source=src, source_id=src, frame_index=i, jpeg=b"x", ttl=3600,
                    max_open_frames=a.max_open, fields={"truth": str(truth[fid])},
                    reserve_per_frame=a.kappa, source_share=a.share,
                )) == "full":  # fmt: skip
                    step()
                if code == "budget":
                    stopped.add(src)
            if i % a.opens_per_round == 0:
                step()
            if len(stopped) == len(sources):
                break
        while any(r.zcard(k.open_frames) for k in keys.every_shard()) or cap.pending:
            step()
        finals = [f for k in keys.every_shard() for _, f in r.xrange(k.final)]
        shards = [r.hgetall(k.budget) for k in keys.every_shard()]
        out: dict[str, Any] = {
            "seed": seed,
            "frames": len(finals),
            "short": short,
            "reasons": dict(collections.Counter(f["reason"] for f in finals)),
        }
        for what, given in ([(f":{src}", a.share) for src in sources] if a.share
                            else [("", a.budget)]):  # fmt: skip
            limits = [int(b.get("limit" + what, 0)) for b in shards]
            spent = [int(b.get("spent" + what, 0)) for b in shards]
            out[what.lstrip(":") or "budget"] = {
                "given": given, "spent": sum(spent),
                "stranded": sum(lim - x for lim, x in zip(limits, spent, strict=True)),
                "overspent": sum(limits) > given
                or any(x > lim for lim, x in zip(limits, spent, strict=True)),
            }  # fmt: skip
        r.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--frames", type=int, default=2000)
    p.add_argument("--share", type=int, default=0, help="two sources' shares of this many")
    p.add_argument("--kappa", type=int, default=4)
    p.add_argument("--tau", type=float, default=0.95)
    p.add_argument("--max-open", type=int, default=64, help="aggregator.max_open_frames")
    p.add_argument("--opens-per-round", type=int, default=4)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    results = [run(a, int(seed)) for seed in a.seeds.split(",")]
    if a.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{a.shards} shards, kappa {a.kappa}, tau {a.tau}, max_open_frames {a.max_open}, "
          f"{a.opens_per_round} opens per step")  # fmt: skip
    for res in results:
        pools = {k: v for k, v in res.items() if isinstance(v, dict) and "given" in v}
        parts = [f"{name} {v['spent']}/{v['given']} spent ({v['spent'] / v['given']:.3f}), "
                 f"{v['stranded']} stranded{', OVERSPENT' if v['overspent'] else ''}"
                 for name, v in pools.items()]  # fmt: skip
        print(
            f"seed {res['seed']}: {res['frames']} frames; "
            + "; ".join(parts)
            + f"; {res['short']} finalised for budget with spare labels in other shards"
        )


if __name__ == "__main__":
    main()
