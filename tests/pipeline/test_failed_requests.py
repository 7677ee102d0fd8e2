"""Failed requests are reported at once, refunded, and asked of another labeler (issue 7,
section 2 point 3), with real processes: ingester, labeler workers, aggregator, a real video.

Six ``python`` labelers of seven fail every request (their model raises); the seventh is a
simulated labeler good enough to make a frame confident alone. The workers report each failure
on the labels stream at once; the aggregator settles it (``failed:<request id>``), gives its
label of budget back and asks another labeler in the same step, and backs off a labeler that
failed three times in a row. Before, each failed request waited out its lease and stayed
charged: in the run the issue measured, 42 labels were bought and 6 obtained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gtx_stream.ops.status import pipeline_status
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from tests.pipeline_fixtures import check_final_records, final_records, pipeline

N_FRAMES = 30
SEED = 5
TAU, KAPPA = 0.9, 5
BAD = [f"bad{j}" for j in range(6)]
LEASE = 60.0  # far longer than the run: a request answered in time never waits for its lease


def always_fails(image: np.ndarray, metadata: dict[str, str]) -> Any:
    """A ``python`` labeler whose model crashes on every frame."""
    raise RuntimeError("model crashed")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_failed_requests_are_refunded_and_asked_of_another(tmp_path: Path, redis_url: str) -> None:
    video = tmp_path / "line.avi"
    truths = write_synthetic_video(video, N_FRAMES, seed=SEED, size=(64, 48))
    write_truth_csv(tmp_path / "truth.csv", truths)
    labelers = [
        *({"id": lab, "backend": "python", "target": f"{__name__}:always_fails",
           "accuracy": 0.9} for lab in BAD),
        {"id": "good", "backend": "simulated", "accuracy": 0.95, "seed": SEED},
    ]  # fmt: skip
    agg = {"tau": TAU, "kappa": KAPPA, "seed": SEED, "budget": 10 * N_FRAMES,
           "lease_seconds": LEASE}  # fmt: skip
    with pipeline(tmp_path, redis_url, aggregator=agg, labelers=labelers) as p:
        p.start("aggregator", "aggregator", "--consumer", "agg-1")
        p.start("labelers-bad", "labeler", *[x for lab in BAD for x in ("--id", lab)])
        p.start("labeler-good", "labeler", "--id", "good")
        p.wait_aggregator_group()
        p.wait_live([*BAD, "good"])
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        p.wait_until(lambda: p.finished(N_FRAMES), f"{N_FRAMES} frames finalised", LEASE)
        r, keys = p.client, p.keys
        records = final_records(r, keys)
        stats = {k: int(float(v)) for k, v in r.hgetall(keys.stats).items()}
        spent = int(r.hget(keys.budget, "spent") or 0)
        outstanding = sum(int(v) for v in r.hvals(keys.load))
        status = pipeline_status(r, keys)
        backed_off = set(r.hkeys(keys.backoff))
        dead = r.xlen(keys.dead)

    assert len(records) == N_FRAMES and dead == 0
    check_final_records(records, TAU, KAPPA)
    for rec in records:  # every frame was labeled by the one labeler that works
        assert json.loads(rec["labelers"]) == ["good"] and rec["reason"] == "confident", rec
    failed = stats.get("requests_failed", 0)
    assert failed > 0
    # bought = obtained + outstanding; failures are given back
    assert spent == stats["labels_applied"] + outstanding == N_FRAMES
    assert stats["requests"] == spent + failed  # every request was answered or reported failed
    assert stats.get("leases_expired", 0) == 0  # nobody waited for a lease to run out
    by_labeler = status["labelers"]
    assert sum(by_labeler[lab]["failed"] for lab in BAD) == failed
    assert by_labeler["good"]["failed"] == 0 and by_labeler["good"]["failures_in_a_row"] == 0
    # a labeler asked three times or more failed as often in a row, and was backed off
    assert all(by_labeler[lab]["failures_in_a_row"] == by_labeler[lab]["failed"] for lab in BAD)
    assert backed_off == {lab for lab in BAD if by_labeler[lab]["failed"] >= 3} != set()
