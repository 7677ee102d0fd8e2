"""Redis memory per finalised frame, with retention on and off (invariant 9).

Run:  .venv/bin/python benchmarks/bench_retention.py [--frames 20000] [--rate 250]

The same pipeline twice in one run, each on a fresh redis-server of its own: retention off
(the baseline), then on. Frames are opened at a steady rate (``open_frame.lua``, with a 1 KB
stand-in for the JPEG); the real :class:`Aggregator` runs in a thread, and every request it
makes is answered at once by a seeded simulated label on the labels stream (10 labelers, tau
0.99, kappa 5). An exporter stand-in, a consumer group on ``final``, deletes each finalised
frame's image and acknowledges its record, as ``gtx-stream export`` does once the image is on
disk: what is measured is the pipeline's own state, not images waiting for export (those add
open frames times the image size to both runs alike).

Retention on uses short periods so that steady state comes within the run: applied every
second, ``final_seconds`` 5, ``frame_grace_seconds`` 2, no clock margin (one machine).
Retention off trims nothing, and frame keys keep their frame TTL (an hour here).

Printed: Redis ``used_memory`` above the empty server's every 2,000 frames for both runs,
bytes per finalised frame at the end, the growth over the second half, and the ratio on/off.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.config import AggregatorSettings, RetentionSettings  # noqa: E402
from gtx_stream.core.draws import simulated_label  # noqa: E402
from gtx_stream.core.records import LabelEntry, LabelRequest  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.pipeline.aggregate.aggregator import Aggregator  # noqa: E402
from gtx_stream.store import frame_scripts  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from gtx_stream.store.scripts import ScriptRunner  # noqa: E402

LABELERS = {f"lab{j}": float(a) for j, a in enumerate(np.linspace(0.8, 1.0, 10))}
IMAGE = bytes(range(256)) * 4  # 1 KB: deleted on export, so its size does not accumulate
EXPORTER = "exporter"
FRAME_TTL = 3600
ON = RetentionSettings(every_seconds=1.0, final_seconds=5.0, frame_grace_seconds=2,
                       clock_skew_seconds=0.0)  # fmt: skip
OFF = RetentionSettings(enabled=False)


@dataclass
class Run:
    name: str
    rows: list[tuple[int, int, int, int]] = field(default_factory=list)
    """(frames opened, used_memory above the empty server's, frames finalised, frames open)"""
    final_memory: int = 0
    finalised: int = 0
    streams: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class InstantLabels:
    """The aggregator's enqueue hook: each request answered at once, as a worker would."""

    def __init__(self, truths: dict[str, int]) -> None:
        self.truths = truths

    def __call__(
        self, client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease: float
    ) -> None:
        pipe = client.pipeline(transaction=False)
        for q in requests:
            truth = self.truths[q.frame_id]
            label = simulated_label(0, q.frame_id, q.labeler_id, truth, LABELERS[q.labeler_id])
            entry = LabelEntry(q.frame_id, q.labeler_id, q.request_id, label)
            pipe.xadd(keys.labels, entry.to_fields())  # type: ignore[arg-type]
        pipe.execute()


def export(r: redis.Redis, keys: Keys) -> int:
    """What the exporter does with each final record once its image is on disk."""
    resp = cast(Any, r.xreadgroup(EXPORTER, "e1", {keys.final: ">"}, count=1000))
    if not resp:
        return 0
    items = resp[0][1]
    pipe = r.pipeline(transaction=False)
    for _, fields in items:
        pipe.delete(fields["image_key"])
    pipe.xack(keys.final, EXPORTER, *[entry_id for entry_id, _ in items])
    pipe.execute()
    return len(items)


def used_memory(r: redis.Redis) -> int:
    return int(cast(dict[str, Any], r.info("memory"))["used_memory"])


def run(name: str, retention: RetentionSettings, n_frames: int, rate: float, every: int) -> Run:
    out = Run(name)
    with EmbeddedRedis() as server:
        r = redis.Redis.from_url(server.url, decode_responses=True)
        keys = Keys("bench")
        for lab, a in LABELERS.items():
            r.hset(keys.labelers, lab, json.dumps({"accuracy": a}))
            r.zadd(keys.live, {lab: time.time() + 3600})
        truths: dict[str, int] = {}
        agg_client = redis.Redis.from_url(server.url, decode_responses=True)
        settings = AggregatorSettings(tau=0.99, kappa=5, sweep_seconds=1.0, block_ms=5)
        agg = Aggregator(agg_client, keys, settings, consumer="bench",
                         enqueue=InstantLabels(truths), retention=retention)  # fmt: skip
        agg.setup()
        r.xgroup_create(keys.final, EXPORTER, id="0", mkstream=True)
        runner = ScriptRunner(r)
        rng = np.random.default_rng(1)
        base = used_memory(r)
        stop = threading.Event()
        worker = threading.Thread(target=agg.run, args=(stop,))
        worker.start()
        t0 = time.perf_counter()
        opened = 0
        try:
            while opened < n_frames:
                due = min(n_frames, int((time.perf_counter() - t0) * rate) + 1)
                calls = []
                for i in range(opened, due):
                    fid = f"cam-{i}"
                    truths[fid] = int(rng.integers(0, 2))
                    calls.append(frame_scripts.open_frame(
                        keys, frame_id=fid, frame_index=i, source="bench", source_id="cam",
                        opened_at=time.time(), ttl=FRAME_TTL, max_open_frames=10**9,
                        reserve_per_frame=0, jpeg=IMAGE, fields={"truth": str(truths[fid])},
                    ))  # fmt: skip
                runner.run(calls)
                for i in range(opened, due):
                    if (i + 1) % every == 0:
                        out.rows.append((i + 1, used_memory(r) - base, _finalised(r, keys),
                                         int(r.zcard(keys.open_frames))))  # fmt: skip
                opened = due
                export(r, keys)
                time.sleep(0.01)
            deadline = time.time() + 60
            while r.zcard(keys.open_frames) and time.time() < deadline:
                export(r, keys)
                time.sleep(0.05)
            while export(r, keys):
                pass
        finally:
            stop.set()
            worker.join()
        out.seconds = time.perf_counter() - t0
        out.final_memory = used_memory(r) - base
        out.finalised = _finalised(r, keys)
        out.streams = {s: int(r.xlen(getattr(keys, s))) for s in ("labels", "opened", "final")}
        out.streams["keys"] = int(r.dbsize())
    return out


def _finalised(r: redis.Redis, keys: Keys) -> int:
    return int(r.hget(keys.stats, "frames_finalised") or 0)


def growth(run: Run) -> float:
    """Bytes per frame between the middle row and the last."""
    (f0, m0, *_), (f1, m1, *_) = run.rows[len(run.rows) // 2 - 1], run.rows[-1]
    return (m1 - m0) / (f1 - f0)


def main() -> None:
    logging.getLogger("gtx_stream").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=250.0, help="frames opened per second")
    ap.add_argument("--every", type=int, default=2_000, help="print memory every this many")
    args = ap.parse_args()
    off = run("off", OFF, args.frames, args.rate, args.every)
    on = run("on", ON, args.frames, args.rate, args.every)
    print(f"{args.frames} frames at {args.rate:.0f}/s; used_memory above the empty server's "
          f"(MB), frames finalised, frames open")  # fmt: skip
    print("| frames opened | retention off: MB | finalised | open | retention on: MB | "
          "finalised | open | on / off |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for (n, m_off, fin_off, open_off), (_, m_on, fin_on, open_on) in zip(
        off.rows, on.rows, strict=True
    ):
        print(f"| {n:,} | {m_off / 1e6:.2f} | {fin_off:,} | {open_off} | {m_on / 1e6:.2f} | "
              f"{fin_on:,} | {open_on} | {m_on / m_off:.3f} |")  # fmt: skip
    for x in (off, on):
        print(f"retention {x.name}: {x.final_memory / 1e6:.2f} MB at the end for {x.finalised:,} "
              f"frames finalised, {x.final_memory / x.finalised:,.0f} bytes per finalised frame; "
              f"growth over the second half {growth(x):,.1f} bytes per frame; "
              f"streams and keys at the end {x.streams}; {x.seconds:.0f} s")  # fmt: skip
    print(f"ratio on / off at the end: {on.final_memory / off.final_memory:.3f}")


if __name__ == "__main__":
    main()
