"""Real crowd labels through the live pipeline: possent, replayed by ``replay`` labelers.

Each task of the dataset becomes a frame (``ingest --tasks``), each recorded worker a labeler
that answers with its recorded label, accuracies come from the dataset's assessment set
(``labelers assess``, Beta estimate, as ``gtx-stream replay`` does). With the aggregator's
seed S, the dispatcher offers each task's workers in the order ``gtx-stream replay`` uses for
seed S, trial 0, so the two must agree task by task: the same labelers in the same order, the
same labels, the same final label and label count, hence the same accuracy and labels per task.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gtx_stream.core.datasets import load_dataset
from gtx_stream.offline.replay import assess, replay, replay_tasks
from gtx_stream.store.params import get_accuracies
from tests.pipeline_fixtures import check_final_records, final_records, pipeline

SEED = 3
TAU = 0.99
KAPPA = 5
LABELER_PROCESSES = 2


def _assess_command(config: Path, folder: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gtx_stream", "labelers", "--config", str(config), "assess",
         str(folder / "assessment_answers.csv"), str(folder / "assessment_truth.csv")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "stored" in out.stdout


@pytest.mark.slow
def test_possent_through_the_pipeline_equals_replay(
    tmp_path: Path, redis_url: str, datasets: Path
) -> None:
    folder = datasets / "possent"
    if not folder.is_dir():
        pytest.skip(f"no possent in {datasets}")
    dataset = load_dataset(folder)
    # frame index i is the i-th task of truth.csv
    with (folder / "truth.csv").open(newline="") as fh:
        tasks = [row["task"] for row in csv.DictReader(fh)]
    workers = list(dataset.workers)
    labelers = [{"id": w, "backend": "replay", "target": str(folder)} for w in workers]
    agg = {"tau": TAU, "kappa": KAPPA, "seed": SEED, "max_open_frames": 128}
    with pipeline(tmp_path, redis_url, prefix="replay", aggregator=agg, labelers=labelers) as p:
        _assess_command(p.config, folder)
        # the accuracies stored are the ones ``gtx-stream replay`` computes for this seed
        expected_acc = assess(dataset, seed=SEED, trial=0, estimator="beta").accuracies
        stored = get_accuracies(p.client, p.keys)
        assert {w: stored[w] for w in workers} == {w: expected_acc[w] for w in workers}

        p.start("aggregator", "aggregator")
        share = -(-len(workers) // LABELER_PROCESSES)
        for j in range(LABELER_PROCESSES):
            ids = workers[j * share : (j + 1) * share]
            p.start(f"labeler-{j}", "labeler", *(x for w in ids for x in ("--id", w)))
        p.wait_aggregator_group()
        p.wait_live(workers, timeout=60)
        p.start("ingester", "ingest", "--tasks", str(folder))
        p.wait_until(lambda: p.finished(len(tasks)), f"{len(tasks)} tasks", timeout=400)
        records = final_records(p.client, p.keys)
        dead = p.client.xlen(p.keys.dead)
        codes = p.sup.stop_all()
    assert set(codes.values()) == {0}, codes
    assert dead == 0
    check_final_records(records, TAU, KAPPA)

    by_task = {tasks[int(f["frame_index"])]: f for f in records}
    assert sorted(by_task) == sorted(tasks), "every task finalised exactly once"
    offline = {t.task: t for t in replay_tasks(dataset, "gtx", tau=TAU, kappa=KAPPA, seed=SEED)}
    assert sorted(offline) == sorted(tasks)
    for task in tasks:
        live, want = by_task[task], offline[task]
        assert tuple(json.loads(live["labelers"])) == want.labelers, f"task {task}"
        assert tuple(json.loads(live["labels"])) == want.labels, f"task {task}"
        assert int(live["label"]) == want.label, f"task {task}"
        assert int(live["n_labels"]) == want.n_labels, f"task {task}"
        assert live["reason"] == want.decision.reason, f"task {task}"
        assert float(live["p1"]) == pytest.approx(want.p1, rel=1e-12, abs=1e-15), f"task {task}"

    # overall, the figures ``gtx-stream replay --trials 1 --seed SEED`` reports for GTX
    truth = np.array([dataset.truth[t] for t in tasks])
    label = np.array([int(by_task[t]["label"]) for t in tasks])
    n = np.array([int(by_task[t]["n_labels"]) for t in tasks])
    [gtx_row] = [
        row
        for row in replay(dataset, tau=TAU, kappa=KAPPA, trials=1, seed=SEED).rows
        if row.method == "gtx"
    ]
    assert float(np.mean(label == truth)) == pytest.approx(gtx_row.accuracy, abs=1e-12)
    assert float(np.mean(n)) == pytest.approx(gtx_row.avg_k, abs=1e-12)
    print(
        f"\npossent through the pipeline: {len(tasks)} tasks, accuracy "
        f"{np.mean(label == truth):.4f} (replay {gtx_row.accuracy:.4f}), labels per task "
        f"{np.mean(n):.3f} (replay {gtx_row.avg_k:.3f})"
    )
