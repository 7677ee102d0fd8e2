"""``gtx-stream experiment finetune`` (gtx_stream.train.experiment) at a tiny size.

The label collection is the simulator's for the same seed; the split keeps whole blocks
apart; a tiny grid writes Figures 4 and 5 and a JSON whose numbers follow from its runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import gtx_stream.offline.simulate as sim
from tests.offline import simulate_reference as ref

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from gtx_stream.train import experiment as ex  # noqa: E402
from gtx_stream.train import experiment_report as report  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = ex.Plan(frames=120, seeds=2, repeats=2, budgets=(40, 150), image_size=64)


def test_split_keeps_whole_blocks_apart() -> None:
    plan = ex.Plan(frames=1050)
    split = ex.split_frames(1050, plan)
    parts = [split.pool, split.assess, split.heldout]
    assert sum(p.size for p in parts) == 1050
    assert len(set(np.concatenate(parts).tolist())) == 1050
    assert (split.heldout.size, split.assess.size) == (100, 100)  # 10 and 10 of 105 blocks
    blocks = [set((p // plan.block_frames).tolist()) for p in parts]
    assert not (blocks[0] & blocks[1] or blocks[0] & blocks[2] or blocks[1] & blocks[2])
    # the same plan, the same split; orders differ per seed and cover the pool
    assert (ex.split_frames(1050, plan).heldout == split.heldout).all()
    orders = ex.label_orders(split, ex.Plan(seeds=3))
    assert all(sorted(o.tolist()) == split.pool.tolist() for o in orders)
    assert not (orders[0] == orders[1]).all()


def test_label_collection_equals_the_simulators_for_the_same_seed() -> None:
    plan = ex.Plan(frames=400, seeds=3, budgets=(60, 200, 2000))
    jpegs, truth = ex.standin_images(plan)
    split = ex.split_frames(len(jpegs), plan)
    orders, labeled = ex.collect_labels(plan, truth, split)
    for cohort in plan.cohorts:
        # the simulator's draws for this seed, with the images' truths in the seed's order
        draws = sim.draw(cohort, trials=plan.seeds, examples=split.pool.size, slots=5,
                         seed=plan.seed, assess_size=split.assess.size,
                         truth=truth[orders])  # fmt: skip
        acc = draws.accuracies("beta")
        counts = sim.simulate_threshold(cohort, draws, acc, taus=[0.95], kappa=5, budget=200)
        for o in counts:
            if o.k not in (None, 5):
                continue
            for s, c in enumerate(labeled[cohort.name, o.method, 200]):
                assert c.n_labeled == int(o.n_labeled[s])
                assert c.errors(truth[orders[s]]) == int(o.errors[s])
        for method in plan.methods:
            for budget in plan.budgets:  # 2000: the pool runs out first
                for s, c in enumerate(labeled[cohort.name, method, budget]):
                    rows: list[tuple[int, float, int]] = []
                    n, used, _, _ = ref.threshold_trial(
                        method, draws, acc, s, tau=0.95, k=5, kappa=5, budget=budget, record=rows
                    )
                    assert (c.n_labeled, c.labels_used) == (n, used)
                    assert c.label.tolist() == [r[0] for r in rows], (cohort.name, method, s)


def test_tiny_grid_writes_figures_and_a_consistent_json(tmp_path: Path) -> None:
    result = ex.run(TINY, cache=tmp_path / "cache", progress=False)
    written = report.write(tmp_path / "out", result)
    assert [p.name for p in written] == [report.JSON_FILE, report.FIGURE4, report.FIGURE5]
    for png in written[1:]:
        image = cv2.imread(str(png))
        assert image is not None and image.shape[0] > 200
    doc = json.loads((tmp_path / "out" / report.JSON_FILE).read_text())
    runs = doc["runs"]
    assert len(runs) == 2 * 4 * 2 * 2 * 2  # cohorts, methods, budgets, seeds, repeats
    assert doc["split"]["heldout"] + doc["split"]["assessment"] + doc["split"]["pool"] == 120
    for row in runs:
        assert 0 <= row["balanced_error"] <= 1 and 0 <= row["ece"] <= 1
        assert row["labels_used"] <= row["budget"] and row["n_train"] <= doc["split"]["pool"]
    # MV and WMV take 5 labels per image: budget // 5 images while the pool lasts
    mv = {r["n_train"] for r in runs if r["method"] == "mv" and r["budget"] == 40}
    assert mv == {8}
    # the summary is the mean of its runs
    cell = next(c for c in doc["summary"] if (c["cohort"], c["method"], c["budget"])
                == ("accurate", "gtx", 150))  # fmt: skip
    mine = [r["balanced_error"] for r in runs if (r["cohort"], r["method"], r["budget"])
            == ("accurate", "gtx", 150)]  # fmt: skip
    assert cell["balanced_error"] == pytest.approx(np.mean(mine)) and cell["runs"] == 4
    test = doc["tests"]["accurate"]["all_budgets"]
    assert test["blocks"] == 2 * 2  # seeds x budgets (repeats averaged)
    assert {(d["a"], d["b"]) for d in test["dunn"]} >= {("mv", "gtx"), ("sv", "gtx")}
    # features were cached: a second run reads them back and gives the same numbers
    assert len(list((tmp_path / "cache").glob("standin-features-*.npy"))) == 1
    again = ex.run(TINY, cache=tmp_path / "cache", progress=False)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in result.rows]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in again.rows]


def test_the_command_runs_and_refuses_bad_input(tmp_path: Path) -> None:
    def gtx(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "gtx_stream", "experiment", "finetune",
                               *args], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)  # fmt: skip

    done = gtx("--out", str(tmp_path / "o"), "--frames", "100", "--seeds", "2", "--repeats",
               "1", "--budgets", "30,90", "--image-size", "64", "--cache", str(tmp_path / "c"),
               "--quiet")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Friedman" in done.stdout and "wrote" in done.stdout
    assert (tmp_path / "o" / report.FIGURE4).is_file()
    bad = gtx("--budgets", "0,10")
    assert bad.returncode == 2 and "positive" in bad.stderr
    bad = gtx("--frames", "15", "--out", str(tmp_path / "x"), "--quiet")
    assert bad.returncode == 2 and "too few blocks" in bad.stderr


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--epochs", "0", "argument --epochs: must be 1 or more, got 0"),  # trained nothing
        ("--epochs", "-1", "argument --epochs: must be 1 or more, got -1"),
        ("--image-size", "0", "argument --image-size: must be 1 or more, got 0"),  # cv2.error
        ("--seed", "-1", "argument --seed: must be 0 or more, got -1"),
        ("--standin-seed", "-1", "argument --standin-seed: must be 0 or more, got -1"),
    ],
)
def test_a_count_out_of_range_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, message: str
) -> None:
    from gtx_stream.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "finetune", "--out", str(tmp_path / "o"), option, value])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(message)
    assert not (tmp_path / "o").exists()
