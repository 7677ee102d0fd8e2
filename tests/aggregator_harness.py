"""In-process pipeline pieces for aggregator tests: open frames, answer requests, run to the end.

Requests are captured from the aggregator's ``enqueue`` hook instead of RQ, and answered by
seeded simulated labelers (gtx_stream.core.draws) with ``LabelEntry`` records that carry the
request's id, as workers do, so these tests need a real Redis but no workers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.records import LabelEntry, LabelRequest
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner


def register(r: redis.Redis, keys: Keys, accuracies: dict[str, float], live: bool = True) -> None:
    for lab, a in accuracies.items():
        r.hset(keys.labelers, lab, json.dumps({"accuracy": a, "source": "test"}))
        if live:
            r.zadd(keys.live, {lab: time.time() + 3600})


def open_frame(
    r: redis.Redis, keys: Keys, index: int, truth: int, source_id: str = "src", **extra: str
) -> str:
    """Open a frame as the ingester does, without its backpressure (no reserve, no limit)."""
    fid = f"{source_id}-{index}"
    status = ScriptRunner(r).run_one(
        frame_scripts.open_frame(
            keys, frame_id=fid, frame_index=index, source="test", source_id=source_id,
            opened_at=time.time(), ttl=3600, max_open_frames=10**6, reserve_per_frame=0,
            jpeg=b"jpeg", fields={"truth": str(truth), **extra},
        )
    )  # fmt: skip
    assert status == "opened"
    return fid


class Capture:
    """The aggregator's enqueue hook: remembers requests instead of making RQ jobs."""

    def __init__(self) -> None:
        self.pending: list[LabelRequest] = []
        self.all: list[LabelRequest] = []

    def __call__(
        self, client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease: float
    ) -> None:
        self.pending.extend(requests)
        self.all.extend(requests)


def answer(
    r: redis.Redis,
    keys: Keys,
    capture: Capture,
    accuracies: dict[str, float],
    seed: int = 0,
    failing: frozenset[str] = frozenset(),
) -> int:
    """Post a simulated label for every captured request, as labeler workers would (a
    failure report for the requests of ``failing`` labelers)."""
    n = 0
    while capture.pending:
        req = capture.pending.pop(0)
        if req.labeler_id in failing:
            post_failure(r, keys, req)
        else:
            post_label(r, keys, req, accuracies, seed)
        n += 1
    return n


def post_label(
    r: redis.Redis, keys: Keys, req: LabelRequest, accuracies: dict[str, float], seed: int = 0
) -> str:
    """XADD the seeded simulated label answering ``req``; returns the entry id."""
    truth = int(r.hget(keys.frame(req.frame_id), "truth") or 0)
    label = simulated_label(seed, req.frame_id, req.labeler_id, truth, accuracies[req.labeler_id])
    entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label)
    return _s(r.xadd(keys.labels, entry.to_fields()))  # type: ignore[arg-type]


def post_failure(r: redis.Redis, keys: Keys, req: LabelRequest, reason: str = "boom") -> str:
    """XADD the failure report of ``req``, as a worker whose backend failed does."""
    entry = LabelEntry.failure(req.frame_id, req.labeler_id, req.request_id, reason)
    return _s(r.xadd(keys.labels, entry.to_fields()))  # type: ignore[arg-type]


def run_until_idle(
    agg: Aggregator,
    r: redis.Redis,
    keys: Keys,
    capture: Capture,
    accuracies: dict[str, float],
    seed: int = 0,
    max_steps: int = 10_000,
    failing: frozenset[str] = frozenset(),
) -> None:
    for _ in range(max_steps):
        report = agg.step(block_ms=1)
        answered = answer(r, keys, capture, accuracies, seed, failing)
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
