"""The replay's queues: who of a task's recorded workers is asked next (``--order``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gtx_stream import cli
from gtx_stream.core.datasets import load_dataset
from gtx_stream.core.draws import labeler_order
from gtx_stream.core.models import Method, ModelName
from gtx_stream.offline.replay import assess, replay
from gtx_stream.offline.replay_queues import Order, queues, setup, weight
from gtx_stream.offline.replay_stream import Estimate, gold_params, stream
from tests.offline.test_replay_stream import _crowd, _run

# Assessment set (Beta(1, 1) estimates): a 4 of 4 right (5/6), b 3 of 4 (2/3), c 3 of 4 (2/3),
# d 1 of 4 (1/3); e answered nothing (1/2). Every task is labeled by all five.
ASSESSMENT_TRUTH = "task,truth\nq1,1\nq2,0\nq3,1\nq4,0\n"
_RIGHT = {"a": 4, "b": 3, "c": 3, "d": 1}
ASSESSMENT_ANSWERS = "task,worker,label\n" + "".join(
    f"q{i + 1},{w},{[1, 0, 1, 0][i] if i < right else 1 - [1, 0, 1, 0][i]}\n"
    for w, right in _RIGHT.items()
    for i in range(4)
)
TASKS = 12
TRUTH = "task,truth\n" + "".join(f"t{i},{i % 2}\n" for i in range(TASKS))
ANSWERS = "task,worker,label\n" + "".join(
    f"t{i},{w},{i % 2}\n" for i in range(TASKS) for w in "abcde"
)


@pytest.fixture
def five(tmp_path: Path) -> Path:
    folder = tmp_path / "five"
    folder.mkdir()
    for name, text in {
        "answers.csv": ANSWERS,
        "truth.csv": TRUTH,
        "assessment_answers.csv": ASSESSMENT_ANSWERS,
        "assessment_truth.csv": ASSESSMENT_TRUTH,
    }.items():
        (folder / name).write_text(text)
    return folder


def test_best_asks_the_highest_accuracy_first_and_ties_in_the_seeded_order(five: Path) -> None:
    ds = load_dataset(five)
    a = assess(ds)
    assert (a.accuracies["a"], a.accuracies["b"], a.accuracies["d"]) == (5 / 6, 2 / 3, 1 / 3)
    s = setup(ds, a.gold_tasks, a.scored_tasks, 4, 0)
    params = gold_params(ds, s, ModelName.ONE_COIN, "beta", a.accuracies)
    _, asked, mask = queues(s, slice(0, TASKS), params, Order.BEST)
    assert mask.all()
    seen_both_ties = set()
    for i, task in enumerate(s.tasks):
        names = [s.workers[j] for j in asked[i]]
        assert names[0] == "a" and names[3:] == ["e", "d"]  # 5/6 first; 1/2, then 1/3 last
        seeded = labeler_order(4, task, list("abcde"))
        assert names[1:3] == [w for w in seeded if w in "bc"]  # b and c tie at 2/3
        seen_both_ties.add(tuple(names[1:3]))
    assert seen_both_ties == {("b", "c"), ("c", "b")}  # the tie is random, not by name
    # the random order is the seeded one, untouched
    _, random_order, _ = queues(s, slice(0, TASKS), params, Order.RANDOM)
    np.testing.assert_array_equal(random_order, s.worker)


def test_best_with_gold_one_coin_stops_on_the_best_workers_labels(five: Path) -> None:
    ds = load_dataset(five)
    # a (5/6) then b or c (2/3), agreeing: p = 10/11 >= 0.9 after two labels on every task
    report = replay(ds, trials=2, tau=0.9, kappa=3, order="best")
    gtx = {row.method: row for row in report.rows}["gtx"]
    assert report.order == "best" and gtx.avg_k == 2.0 and gtx.accuracy == 1.0
    assert report.rows[-1].method == "ds-all"  # a best-order replay is a stream
    assert replay(ds, trials=2, tau=0.9, kappa=3).order == "random"


def test_best_ranks_by_the_parameters_in_force_when_each_task_arrives(tmp_path: Path) -> None:
    ds = load_dataset(_crowd(tmp_path))
    for model in (ModelName.ONE_COIN, ModelName.TWO_COIN):
        o, s = _run(ds, Method.GTX, model, Estimate.EM, 25, Order.BEST)
        assert o.fits >= 5
        starts = np.concatenate([[0], np.cumsum(o.n_labels)])  # labels bought before task i
        for i in range(len(s.tasks)):
            params = [p for n, p in o.snapshots if n <= starts[i]][-1]
            _, expected, _ = queues(s, slice(i, i + 1), params, Order.BEST)
            np.testing.assert_array_equal(o.worker[i], expected[0])
            skill = weight(params)[o.worker[i][s.mask[i]]]
            assert np.all(np.diff(skill) <= 0)  # best first
        assert (o.worker != s.worker).any()  # it did reorder


def test_mv_with_em_refits_only_when_the_order_reads_parameters(tmp_path: Path) -> None:
    ds = load_dataset(_crowd(tmp_path))
    a = assess(ds, seed=3, trial=1, assess_fraction=0.2)
    s = setup(ds, a.gold_tasks, a.scored_tasks, 3, 1)
    initial = gold_params(ds, s, ModelName.ONE_COIN, "beta", a.accuracies)
    fits = [
        stream(Method.MV, s, ModelName.ONE_COIN, Estimate.EM, initial, tau=0.95, kappa=4,
               every=20, order=order).fits
        for order in Order
    ]  # fmt: skip
    assert fits[0] == 0 and fits[1] >= 5  # random: MV reads no parameter; best: its order does


def test_cli_order_best(five: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["replay", str(five), "--order", "best", "--trials", "2", "--tau", "0.9"])
    out, err = capsys.readouterr()
    assert rc == 0 and "best-first order" in out
    # off a terminal, a progress line at each tenth of the way: here one per trial
    assert [line.split("  ")[:2] for line in err.splitlines()] == [
        ["replay trials", "1/2"],
        ["replay trials", "2/2"],
    ]
    argv = ["replay", str(five), "--order", "best", "--strategy", "uncertainty", "--budget", "20"]
    rc = cli.main(argv)
    _, err = capsys.readouterr()
    assert rc == 2 and "order best is for strategy threshold" in err and err.count("\n") == 1
