"""End to end: a real video file through ingester, labeler workers and aggregator processes.

Every frame of the video comes out once on ``gtx:final`` (the default prefix), and the finalised
labels, confidences and label counts equal the offline threshold rule on the same seeded draws
(invariant 6), frame by frame. Every label came back with its request's id and was applied for
that request (``done:<entry id>`` in the frame's requests hash).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import numpy as np
import pytest

from gtx_stream.core.decision import Stop, threshold_stop
from gtx_stream.core.draws import labeler_order, simulated_label
from gtx_stream.core.records import LabelEntry, RequestState, decode_fields
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from tests.pipeline_fixtures import (
    check_final_records,
    final_records,
    pipeline,
)

N_FRAMES = 40
SEED = 7
TAU = 0.99
KAPPA = 5
ACCURACIES = {"ann": 0.95, "bob": 0.9, "cid": 0.85, "dee": 0.8, "eve": 0.75, "fay": 0.7}


def _labeler(lab: str) -> dict[str, object]:
    return {"id": lab, "backend": "simulated", "accuracy": ACCURACIES[lab], "seed": SEED}


def _offline(records: list[dict[str, str]], truths: list[int]) -> tuple[list[list[str]], Stop]:
    """The same frames run offline: each frame's seeded labeler order and seeded labels."""
    ids = list(ACCURACIES)
    fids = [f["frame_id"] for f in records]
    orders = [labeler_order(SEED, fid, ids) for fid in fids]
    y = [truths[int(f["frame_index"])] for f in records]
    seq = np.array(
        [
            [simulated_label(SEED, fid, lab, t, ACCURACIES[lab]) for lab in order]
            for fid, order, t in zip(fids, orders, y, strict=True)
        ]
    )
    acc = np.array([[ACCURACIES[lab] for lab in order] for order in orders])
    return orders, threshold_stop("gtx", seq, acc, TAU, KAPPA)


@pytest.mark.slow
def test_video_through_the_pipeline_finalises_every_frame_once(
    tmp_path: Path, redis_url: str
) -> None:
    video = tmp_path / "line.avi"
    truths = write_synthetic_video(video, N_FRAMES, seed=SEED)
    write_truth_csv(tmp_path / "truth.csv", truths)
    agg = {"tau": TAU, "kappa": KAPPA, "seed": SEED, "max_open_frames": 16}
    with pipeline(
        tmp_path,
        redis_url,
        aggregator=agg,
        labelers=[_labeler(lab) for lab in ACCURACIES],
    ) as p:
        p.start("aggregator", "aggregator", "--consumer", "agg-1")
        # three worker processes, two labelers each
        ids = list(ACCURACIES)
        for i in range(0, len(ids), 2):
            p.start(f"labeler-{i}", "labeler", "--id", ids[i], "--id", ids[i + 1])
        p.wait_aggregator_group()
        # dispatch walks each frame's seeded order over the live labelers: all must be live
        p.wait_live(ids)
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        p.wait_until(lambda: p.finished(N_FRAMES), f"{N_FRAMES} frames to be finalised", 90)
        assert p.sup.services["ingester"].returncode == 0, p.logs()
        r, keys = p.client, p.keys
        assert keys.final == "gtx:final"
        records = final_records(r, keys)
        labels_stream = [(entry_id, LabelEntry.from_fields(decode_fields(fields)))
                         for entry_id, fields in r.xrange(keys.labels)]  # fmt: skip
        requests = {f["frame_id"]: r.hgetall(keys.frame_requests(f["frame_id"])) for f in records}
        stats = cast(dict[str, str], r.hgetall(keys.stats))
        spent = int(r.hget(keys.budget, "spent") or 0)
        dead = r.xlen(keys.dead)
        pending = r.xpending(keys.labels, "aggregator")["pending"]
        codes = p.sup.stop_all()

    # every frame index exactly once, nothing dead, every service stopped cleanly
    assert sorted(int(f["frame_index"]) for f in records) == list(range(N_FRAMES))
    assert dead == 0
    assert set(codes.values()) == {0}, codes
    check_final_records(records, TAU, KAPPA)
    assert len({f["source"] for f in records}) == 1
    # every label on the labels stream was counted once, in its frame's record; one label paid
    # for each request (no lease ran out in this run)
    n_labels = sum(int(f["n_labels"]) for f in records)
    counted = sorted((f["frame_id"], lab) for f in records for lab in json.loads(f["labelers"]))
    arrived = sorted((e.frame_id, e.labeler) for _, e in labels_stream)
    assert counted == arrived
    assert not any(e.failed for _, e in labels_stream)
    for entry_id, e in labels_stream:  # each applied for the request it answers
        assert e.request_id
        assert requests[e.frame_id][e.labeler] == RequestState("done", entry_id).encode()
    assert n_labels == spent == int(stats["labels_applied"])
    assert int(stats["frames_finalised"]) == int(stats["frames_opened"]) == N_FRAMES
    assert pending == 0
    assert all(f["reason"] in ("confident", "kappa") for f in records)

    # invariant 6: the offline rule on the same seeded draws, frame by frame
    orders, offline = _offline(records, truths)
    for i, f in enumerate(records):
        n = int(offline.n_labels[i])
        where = f"frame {f['frame_id']}"
        assert int(f["n_labels"]) == n, where
        assert json.loads(f["labelers"]) == orders[i][:n], where
        assert int(f["label"]) == int(offline.posterior.label[i]), where
        assert float(f["p1"]) == float(offline.posterior.p1[i]), where
        confidence = float(offline.posterior.confidence[i])
        assert float(f["confidence"]) == confidence, where
