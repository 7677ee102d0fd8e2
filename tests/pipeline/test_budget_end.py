"""The end of the budget is spent on finishing frames (issue 7, section 2 point 6).

Real processes (ingester, labeler workers, aggregator) on a real video, with a budget far
smaller than the video needs. ``open_frame.lua`` opens a frame only while the budget left can
give every open frame, the new one included, kappa more labels (or when nothing is open), so
the frames that are open when the budget runs low are finished instead of new ones being
opened: at most one frame (the last, opened on what was left) ends for ``budget``. Before,
every frame open when the budget ran out did: 52 of 161 in the run the issue measured, with
1 to 4 labels each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from tests.pipeline_fixtures import check_final_records, final_records, pipeline

BUDGET = 400
N_FRAMES = 300  # more than the budget can label
MAX_OPEN = 64  # the default
TAU, KAPPA, SEED = 0.99, 5, 11
ACCURACIES = {"ann": 0.95, "bob": 0.9, "cid": 0.85, "dee": 0.8, "eve": 0.75, "fay": 0.7}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_budgets_end_finishes_open_frames(tmp_path: Path, redis_url: str) -> None:
    video = tmp_path / "line.avi"
    truths = write_synthetic_video(video, N_FRAMES, seed=SEED, size=(64, 48))
    write_truth_csv(tmp_path / "truth.csv", truths)
    agg = {"tau": TAU, "kappa": KAPPA, "seed": SEED, "budget": BUDGET,
           "max_open_frames": MAX_OPEN}  # fmt: skip
    labelers = [{"id": lab, "backend": "simulated", "accuracy": a, "seed": SEED}
                for lab, a in ACCURACIES.items()]  # fmt: skip
    with pipeline(tmp_path, redis_url, aggregator=agg, labelers=labelers) as p:
        p.start("aggregator", "aggregator", "--consumer", "agg-1")
        p.start("labelers", "labeler", "--all")
        p.wait_aggregator_group()
        p.wait_live(list(ACCURACIES))
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        p.wait_until(p.finished, "the budget to be spent and every open frame finalised", 180)
        assert p.sup.services["ingester"].returncode == 0, p.logs()
        r, keys = p.client, p.keys
        records = final_records(r, keys)
        spent = int(r.hget(keys.budget, "spent") or 0)
        opened = r.xlen(keys.opened)
        ingest_log = p.sup.services["ingester"].tail(5)

    assert spent == BUDGET, ingest_log
    assert len(records) == opened < N_FRAMES  # stopped for the budget, every frame finalised
    check_final_records(records, TAU, KAPPA)
    assert sum(int(rec["n_labels"]) for rec in records) == spent
    reasons = Counter(rec["reason"] for rec in records)
    assert reasons["budget"] <= MAX_OPEN  # what the issue asks for
    assert reasons["budget"] <= 1, reasons  # what the reserve gives: only the last frame
