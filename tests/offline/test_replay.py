"""Replay of real crowdsourced labels: tiny hand-written folders with exact expected figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gtx_stream import cli
from gtx_stream.core.datasets import DatasetError, load_dataset
from gtx_stream.core.decision import Decision
from gtx_stream.core.draws import labeler_order
from gtx_stream.offline.replay import (
    Report,
    Row,
    assess,
    gold_tasks,
    replay,
    replay_tasks,
)

# Assessment set: a is right on 4 of 4 items, b on 3 of 4, c on 2 of 4, e (who labels no task)
# on 1 of 1; d, f and g answered none. Beta(1, 1) estimates: a 5/6, b 2/3, c 1/2, and 1/2 for
# d, f, g. In log-odds a weighs log 5, b log 2, everyone else nothing.
ASSESSMENT_TRUTH = "task,truth\nq1,1\nq2,0\nq3,1\nq4,0\n"
ASSESSMENT_ANSWERS = """task,worker,label
q1,a,1
q2,a,0
q3,a,1
q4,a,0
q1,b,1
q2,b,0
q3,b,1
q4,b,1
q1,c,1
q2,c,1
q3,c,0
q4,c,0
q1,e,1
"""
TRUTH = "task,truth\nt1,1\nt2,0\nt3,1\nt4,0\nt5,1\n"
# t1: a and b agree on 1: GTX is confident (p1 = 10/11 >= 0.9) once both are in.
# t2: a says 0, b 1, d 0: GTX p1 = 2/7, never confident, takes kappa = 3 labels.
# t3: two labels only (fewer than kappa): every method runs out.
# t4: one label from a worker of accuracy 1/2: every method runs out.
# t5: four labels from workers of accuracy 1/2: GTX and SV stay at 1/2 and stop at kappa.
ANSWERS = """task,worker,label
t1,a,1
t1,b,1
t1,c,1
t2,a,0
t2,b,1
t2,d,0
t3,b,0
t3,c,1
t4,d,1
t5,c,1
t5,d,1
t5,f,1
t5,g,1
"""
TAU, KAPPA = 0.9, 3


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return _write(
        tmp_path / "tiny",
        {
            "answers.csv": ANSWERS,
            "truth.csv": TRUTH,
            "assessment_answers.csv": ASSESSMENT_ANSWERS,
            "assessment_truth.csv": ASSESSMENT_TRUTH,
        },
    )


def _rows(report: Report) -> dict[str, Row]:
    return {row.method: row for row in report.rows}


def test_load_dataset_reads_every_file(tiny: Path) -> None:
    ds = load_dataset(tiny)
    assert ds.name == "tiny"
    assert ds.truth == {"t1": 1, "t2": 0, "t3": 1, "t4": 0, "t5": 1}
    assert ds.answers["t2"] == {"a": 0, "b": 1, "d": 0}
    assert ds.workers == ("a", "b", "c", "d", "f", "g")
    assert ds.n_labels == 13
    assert ds.assessment is not None and ds.assessment.n_labels == 13


def test_accuracies_from_the_assessment_set(tiny: Path) -> None:
    a = assess(load_dataset(tiny))
    assert a.accuracies == pytest.approx(
        {"a": 5 / 6, "b": 2 / 3, "c": 0.5, "d": 0.5, "f": 0.5, "g": 0.5}
    )
    assert a.gold_tasks == ()
    assert a.scored_tasks == ("t1", "t2", "t3", "t4", "t5")
    assert a.unassessed == 3  # d, f, g


def test_mle_accuracies(tiny: Path) -> None:
    a = assess(load_dataset(tiny), estimator="mle")
    assert a.accuracies == pytest.approx(
        {"a": 1.0, "b": 0.75, "c": 0.5, "d": 0.5, "f": 0.5, "g": 0.5}
    )


def test_per_task_results_are_exact(tiny: Path) -> None:
    ds = load_dataset(tiny)
    results = {r.task: r for r in replay_tasks(ds, "gtx", tau=TAU, kappa=KAPPA, seed=3)}
    order = labeler_order(3, "t1", ["a", "b", "c"])
    n1 = max(order.index("a"), order.index("b")) + 1
    t1 = results["t1"]
    assert (t1.n_labels, t1.label, t1.decision) == (n1, 1, Decision.CONFIDENT)
    assert t1.p1 == pytest.approx(10 / 11)
    assert t1.labelers == tuple(order[:n1])
    assert t1.labels == (1,) * n1
    expected = {  # task: (n_labels, label, p1, decision)
        "t2": (3, 0, 2 / 7, Decision.KAPPA),
        "t3": (2, 0, 1 / 3, Decision.EXHAUSTED),
        "t4": (1, 1, 0.5, Decision.EXHAUSTED),
        "t5": (3, 1, 0.5, Decision.KAPPA),
    }
    for task, (n, label, p1, decision) in expected.items():
        r = results[task]
        assert (r.n_labels, r.label, r.decision) == (n, label, decision), task
        assert r.p1 == pytest.approx(p1), task
        assert r.truth == ds.truth[task]


def test_labels_arrive_in_the_order_of_labeler_order(tiny: Path) -> None:
    ds = load_dataset(tiny)
    for trial in (0, 1):
        for r in replay_tasks(ds, "mv", tau=TAU, kappa=KAPPA, seed=7, trial=trial):
            workers = list(ds.answers[r.task])
            assert r.labelers == tuple(labeler_order(7 + trial, r.task, workers)[: r.n_labels])
            assert r.labels == tuple(ds.answers[r.task][w] for w in r.labelers)
            assert len(set(r.labelers)) == len(r.labelers)  # one label per worker and task


def test_report_figures_are_exact(tiny: Path) -> None:
    report = replay(load_dataset(tiny), tau=TAU, kappa=KAPPA, trials=2, seed=0)
    rows = _rows(report)
    assert list(rows) == ["gtx", "sv", "mv", "wmv", "mv-all"]
    expected = {  # method: (accuracy, MAE, labels per task or None when order-dependent)
        "gtx": (3 / 5, (1 / 11 + 2 / 7 + 2 / 3 + 1 / 2 + 1 / 2) / 5, None),
        "sv": (3 / 5, (1 / 3 + 4 / 9 + 7 / 12 + 1 / 2 + 1 / 2) / 5, 12 / 5),
        "mv": (4 / 5, (0 + 1 / 3 + 1 / 2 + 1 + 0) / 5, 12 / 5),
        "wmv": (3 / 5, (0 + 1 / 3 + 4 / 7 + 1 + 0) / 5, 12 / 5),
        "mv-all": (4 / 5, (0 + 1 / 3 + 1 / 2 + 1 + 0) / 5, 13 / 5),
    }
    for method, (accuracy, mae, avg_k) in expected.items():
        row = rows[method]
        assert row.accuracy == pytest.approx(accuracy), method
        assert row.error == pytest.approx(1 - accuracy), method
        assert row.mae == pytest.approx(mae), method
        assert row.accuracy_se == pytest.approx(0.0), method
        assert row.n_tasks == 5 and row.trials == 2
        if avg_k is not None:
            assert row.avg_k == pytest.approx(avg_k), method
    # GTX: t1 stops once a and b are both in, which depends on the order of each trial
    n1 = [
        max(o.index("a"), o.index("b")) + 1
        for o in (labeler_order(s, "t1", ["a", "b", "c"]) for s in (0, 1))
    ]
    assert rows["gtx"].avg_k == pytest.approx(sum((n + 3 + 2 + 1 + 3) / 5 for n in n1) / 2)
    assert (rows["gtx"].tau, rows["gtx"].k) == (TAU, None)
    assert (rows["mv"].tau, rows["mv"].k) == (None, KAPPA)
    assert report.unassessed == 3 and report.n_gold == 0
    assert report.assessment == "assessment set"


def test_tasks_that_run_out_of_labelers_are_counted(tiny: Path) -> None:
    rows = _rows(replay(load_dataset(tiny), tau=TAU, kappa=KAPPA, trials=1))
    for method in ("gtx", "sv", "mv", "wmv"):
        assert rows[method].exhausted == 2  # t3 and t4
        assert math.isnan(rows[method].exhausted_se)  # one trial has no standard error
    # with kappa = 1 nobody runs out: every task has at least one label
    rows = _rows(replay(load_dataset(tiny), tau=TAU, kappa=1, trials=1))
    assert [rows[m].exhausted for m in ("gtx", "sv", "mv", "wmv")] == [0, 0, 0, 0]


def test_a_task_without_labels_runs_out_at_once(tmp_path: Path) -> None:
    folder = _write(
        tmp_path / "d",
        {
            "answers.csv": "task,worker,label\nx,w1,1\n",
            "truth.csv": "task,truth\nx,1\ny,0\n",
            "assessment_answers.csv": "task,worker,label\nq,w1,1\n",
            "assessment_truth.csv": "task,truth\nq,1\n",
        },
    )
    results = {r.task: r for r in replay_tasks(load_dataset(folder), "gtx", tau=TAU, kappa=KAPPA)}
    y = results["y"]
    assert (y.n_labels, y.labelers, y.decision, y.p1) == (0, (), Decision.EXHAUSTED, 0.5)


# -- gold split, when the folder has no assessment set -----------------------------------------

GOLD_TRUTH = "task,truth\n" + "".join(f"g{i},{i % 2}\n" for i in range(10))
# w1 is always right, w2 always wrong, w3 right on even tasks only
GOLD_ANSWERS = "task,worker,label\n" + "".join(
    f"g{i},w1,{i % 2}\ng{i},w2,{1 - i % 2}\ng{i},w3,0\n" for i in range(10)
)


@pytest.fixture
def no_assessment(tmp_path: Path) -> Path:
    return _write(tmp_path / "plain", {"answers.csv": GOLD_ANSWERS, "truth.csv": GOLD_TRUTH})


def test_gold_tasks_are_left_out_of_scoring(no_assessment: Path) -> None:
    ds = load_dataset(no_assessment)
    a = assess(ds, seed=5, trial=2, assess_fraction=0.3)
    assert len(a.gold_tasks) == 3
    assert a.gold_tasks == tuple(gold_tasks(list(ds.truth), 0.3, 5, 2))
    assert set(a.gold_tasks).isdisjoint(a.scored_tasks)
    assert set(a.gold_tasks) | set(a.scored_tasks) == set(ds.truth)
    even = sum(1 for t in a.gold_tasks if int(t[1:]) % 2 == 0)
    assert a.accuracies == pytest.approx({"w1": 4 / 5, "w2": 1 / 5, "w3": (even + 1) / 5})
    scored = [r.task for r in replay_tasks(ds, "gtx", seed=5, trial=2, assess_fraction=0.3)]
    assert scored == list(a.scored_tasks)
    report = replay(ds, trials=3, seed=5, assess_fraction=0.3, kappa=3)
    assert report.n_gold == 3 and report.assessment == "gold tasks"
    assert all(row.n_tasks == 7 for row in report.rows)


def test_gold_split_depends_on_seed_plus_trial_only() -> None:
    tasks = [f"t{i}" for i in range(50)]
    assert gold_tasks(tasks, 0.1, 4, 1) == gold_tasks(list(reversed(tasks)), 0.1, 5, 0)
    assert gold_tasks(tasks, 0.1, 4, 0) != gold_tasks(tasks, 0.1, 4, 1)
    assert len(gold_tasks(tasks, 0.1, 0)) == 5
    assert gold_tasks(tasks, 0.0, 0) == []


def test_an_assessment_set_ignores_the_gold_fraction(tiny: Path) -> None:
    a = assess(load_dataset(tiny), assess_fraction=0.5)
    assert a.gold_tasks == () and len(a.scored_tasks) == 5


# -- determinism ---------------------------------------------------------------------------


def test_same_seed_same_report(no_assessment: Path) -> None:
    ds = load_dataset(no_assessment)
    assert replay(ds, trials=3, seed=11, kappa=2) == replay(ds, trials=3, seed=11, kappa=2)
    first = replay_tasks(ds, "gtx", seed=11, kappa=2)
    assert first == replay_tasks(ds, "gtx", seed=11, kappa=2)
    orders = {tuple(r.labelers for r in replay_tasks(ds, "mv", seed=s, kappa=3)) for s in range(4)}
    assert len(orders) > 1  # the seed does change the order


# -- bad input -----------------------------------------------------------------------------


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(["replay", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _cli([str(tmp_path / "nope")], capsys)
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "dataset folder not found" in err and "nope" in err


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({"answers.csv": ANSWERS}, "missing file", id="no-truth"),
        pytest.param({"truth.csv": TRUTH}, "missing file", id="no-answers"),
        pytest.param(
            {"answers.csv": ANSWERS, "truth.csv": TRUTH, "assessment_truth.csv": ASSESSMENT_TRUTH},
            "assessment_answers.csv",
            id="half-assessment",
        ),
        pytest.param(
            {"answers.csv": "task,worker,label\nt1,a,2\n", "truth.csv": TRUTH},
            "label must be 0 or 1",
            id="bad-label",
        ),
        pytest.param(
            {"answers.csv": "task,worker,label\nt1,a,1\nt1,a,0\n", "truth.csv": TRUTH},
            "labeled task t1 twice",
            id="duplicate-pair",
        ),
        pytest.param(
            {"answers.csv": "task,labeler,label\nt1,a,1\n", "truth.csv": TRUTH},
            "expected header",
            id="bad-header",
        ),
    ],
)
def test_cli_bad_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, str], message: str
) -> None:
    rc, out, err = _cli([str(_write(tmp_path / "bad", files))], capsys)
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert message in err
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / "bad")


def test_a_task_without_truth_is_refused_by_default_and_accepted_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _write(
        tmp_path / "open",
        {"answers.csv": "task,worker,label\nt1,a,1\nzz,a,1\n", "truth.csv": "task,truth\nt1,1\n",
         "assessment_answers.csv": "task,worker,label\nq1,a,1\n",
         "assessment_truth.csv": "task,truth\nq1,1\n"},
    )  # fmt: skip
    with pytest.raises(DatasetError, match=r"answers.csv:3: task zz has no row in .*truth.csv"):
        load_dataset(folder)
    assert load_dataset(folder, truthless=True).truthless == ("zz",)
    rc, out, err = _cli([str(folder), "--trials", "1"], capsys)
    assert rc == 0 and err.splitlines() == [err.splitlines()[0]]  # the progress line only
    assert err.startswith("replay trials  1/1  100%")
    assert "scored tasks: 1;" in out


def test_cli_bad_option(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli([str(tiny), "--tau", "1.5"], capsys)
    assert rc == 2 and "tau" in err


def test_cli_json_and_table(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tiny), "--tau", str(TAU), "--kappa", str(KAPPA), "--trials", "1"]
    rc, out, _ = _cli([*args, "--json"], capsys)
    assert rc == 0
    doc = json.loads(out)
    assert doc["dataset"] == "tiny" and doc["trials"] == 1
    rows = {row["method"]: row for row in doc["rows"]}
    assert rows["mv"]["accuracy"] == pytest.approx(0.8)
    assert rows["mv"]["accuracy_se"] is None  # one trial: no standard error
    assert rows["mv-all"]["avg_k"] == pytest.approx(13 / 5)
    rc, out, _ = _cli(args, capsys)
    assert rc == 0
    assert "mv-all" in out and "tau=0.9" in out and "k=3" in out and "0.8000 ± -" in out


# -- the real data -------------------------------------------------------------------------


def test_smoke_possent(datasets: Path) -> None:
    ds = load_dataset(datasets / "possent")
    report = replay(ds, trials=2, seed=0)
    rows = _rows(report)
    assert report.assessment == "assessment set" and report.unassessed == 0
    assert rows["mv-all"].n_tasks == 1000 and rows["mv-all"].avg_k == 20
    # 43 tasks are 10-10 ties, given the label 1; published MV (ties split): 0.933
    assert rows["mv-all"].accuracy == pytest.approx(0.935)
    for method in ("gtx", "sv", "mv", "wmv"):
        assert 1 <= rows[method].avg_k <= 5
        assert rows[method].accuracy > 0.75
        assert rows[method].exhausted == 0
    assert rows["gtx"].mae < rows["mv"].mae


def _missing_truth_rows(tmp_path: Path) -> Path:
    """The tiny folder with t5's truth row gone (a truth.csv that misses rows)."""
    return _write(
        tmp_path / "partial",
        {
            "answers.csv": ANSWERS,
            "truth.csv": TRUTH.replace("t5,1\n", ""),
            "assessment_answers.csv": ASSESSMENT_ANSWERS,
            "assessment_truth.csv": ASSESSMENT_TRUTH,
        },
    )


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ([], "tasks without a truth: 1, left out (no row in truth.csv)"),
        (
            ["--strategy", "uncertainty", "--budget", "6"],
            "tasks without a truth: 1, left out (no row in truth.csv)",
        ),
        (["--model", "two_coin"], "tasks without a truth: 1, labeled, not scored"),
    ],
    ids=["default", "uncertainty", "stream"],
)
def test_tasks_missing_from_truth_csv_are_counted_in_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], said: str
) -> None:
    """Before, the default replay dropped them without a word (4 tasks, no line about t5)."""
    folder = _missing_truth_rows(tmp_path)
    rc, out, _ = _cli([str(folder), "--trials", "1", "--quiet", *extra], capsys)
    assert rc == 0 and said in out.splitlines()
    rc, out, _ = _cli([str(folder), "--trials", "1", "--quiet", "--json", *extra], capsys)
    assert rc == 0 and json.loads(out)["truthless"] == 1


def test_every_without_em_is_refused(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--every is EM's cadence: before, --estimate gold ran with it and ignored it."""
    rc, out, err = _cli([str(tiny), "--every", "10", "--quiet"], capsys)
    assert rc == 2 and out == ""
    assert err == "gtx-stream replay: error: --every is the EM refit cadence: it goes with " \
                  "--estimate em\n"  # fmt: skip
    rc, _, _ = _cli([str(tiny), "--every", "10", "--estimate", "em", "--trials", "1",
                     "--quiet"], capsys)  # fmt: skip
    assert rc == 0


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--kappa", "argument --kappa: must be 1 or more, got -1"),  # was 'need at least one
        ("--seed", "argument --seed: must be 0 or more, got -1"),  # array to stack'
    ],
)
def test_a_negative_count_is_a_usage_error(
    tiny: Path, capsys: pytest.CaptureFixture[str], option: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["replay", str(tiny), option, "-1"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(message)
