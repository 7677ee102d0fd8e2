"""In-process pipeline pieces for aggregator tests: open frames, answer requests, run to the end.

Requests are captured from the aggregator's ``enqueue`` hook instead of RQ, and answered by
seeded simulated labelers (gtx_stream.core.draws), so these tests need a real Redis but no workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.draws import simulated_label
from gtx_stream.pipeline.aggregate.aggregator import Aggregator, Request
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import load_script


def register(r: redis.Redis, keys: Keys, accuracies: dict[str, float], live: bool = True) -> None:
    for lab, a in accuracies.items():
        r.hset(keys.labelers, lab, json.dumps({"accuracy": a, "source": "test"}))
        if live:
            r.zadd(keys.live, {lab: time.time() + 3600})


def open_frame(
    r: redis.Redis, keys: Keys, index: int, truth: int, source_id: str = "src", **extra: str
) -> str:
    fid = f"{source_id}-{index}"
    fields = [x for kv in {"truth": str(truth), **extra}.items() for x in kv]
    status = load_script(r, "open_frame")(
        keys=[keys.frame(fid), keys.image(fid), keys.open_frames, keys.source(source_id),
              keys.budget, keys.stats, keys.opened],
        args=[fid, index, "test", source_id, repr(time.time()), 3600, 10**6, b"jpeg", *fields],
    )  # fmt: skip
    assert (status.decode() if isinstance(status, bytes) else status) == "opened"
    return fid


class Capture:
    """The aggregator's enqueue hook: remembers requests instead of making RQ jobs."""

    def __init__(self) -> None:
        self.pending: list[Request] = []
        self.all: list[Request] = []

    def __call__(
        self, client: redis.Redis, keys: Keys, requests: Sequence[Request], lease: float
    ) -> None:
        self.pending.extend(requests)
        self.all.extend(requests)


def answer(
    r: redis.Redis,
    keys: Keys,
    capture: Capture,
    accuracies: dict[str, float],
    seed: int = 0,
) -> int:
    """Post a simulated label for every captured request, as labeler workers would."""
    n = 0
    while capture.pending:
        labeler, fid, rid = capture.pending.pop(0)
        truth = int(r.hget(keys.frame(fid), "truth") or 0)
        label = simulated_label(seed, fid, labeler, truth, accuracies[labeler])
        r.xadd(
            keys.labels,
            {"frame_id": fid, "labeler": labeler, "label": str(label), "request_id": rid},
        )
        n += 1
    return n


def run_until_idle(
    agg: Aggregator,
    r: redis.Redis,
    keys: Keys,
    capture: Capture,
    accuracies: dict[str, float],
    seed: int = 0,
    max_steps: int = 10_000,
) -> None:
    for _ in range(max_steps):
        report = agg.step(block_ms=1)
        answered = answer(r, keys, capture, accuracies, seed)
        if not answered and not report.labels_read and r.zcard(keys.open_frames) == 0:
            return
    raise AssertionError("aggregator did not finish")


def make_aggregator(
    r: redis.Redis, keys: Keys, capture: Capture, consumer: str = "a1", **settings: object
) -> Aggregator:
    s = AggregatorSettings(**{"sweep_seconds": 0.05, **settings})  # type: ignore[arg-type]
    agg = Aggregator(r, keys, s, consumer=consumer, enqueue=capture)
    agg.setup()
    return agg


def final_records(r: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [
        {_s(k): _s(v) for k, v in fields.items()} for _, fields in r.xrange(keys.final, "-", "+")
    ]


def dead_records(r: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [
        {_s(k): _s(v) for k, v in fields.items()} for _, fields in r.xrange(keys.dead, "-", "+")
    ]


def _s(x: object) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)
