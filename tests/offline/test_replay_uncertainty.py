"""Uncertainty sampling offline: the selection rule, the simulator's rules, the replay option."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from gtx_stream import cli
from gtx_stream.core.datasets import Dataset, load_dataset
from gtx_stream.core.decision import TIE_BLOCK, most_uncertain, nth_tied, tie_break, tie_breaks
from gtx_stream.core.draws import labeler_order
from gtx_stream.core.models import Method
from gtx_stream.offline import simulate as sim
from gtx_stream.offline.replay import Report, Row, _queues, assess, replay
from gtx_stream.offline.replay_uncertainty import uncertainty_sample
from gtx_stream.offline.simulate.uncertainty import _Blocks

# -- the selection rule --------------------------------------------------------------------


def test_most_uncertain_picks_as_the_simulators_blocks() -> None:
    """One rule: core's pick over a plain array equals the simulator's block summaries."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        unc = rng.choice([0.0, 0.1, 0.25, 0.5], size=42)
        running = rng.random(42) < 0.8
        u = float(rng.random())
        keys = np.where(running, unc, -1.0)
        blocks = _Blocks(keys.reshape(1, 7, 6).copy(), np.zeros((1, 7, 6), dtype=np.int64))
        want = int(blocks.pick(np.array([u]))[0]) if running.any() else -1
        assert most_uncertain(unc, running, u) == want


def test_ties_go_to_the_nth_tied_in_index_order() -> None:
    unc, running = [0.2, 0.4, 0.1, 0.4, 0.4], [True, True, True, False, True]
    assert most_uncertain(unc, running, 0.0) == 1
    assert most_uncertain(unc, running, 0.49) == 1
    assert most_uncertain(unc, running, 0.5) == 4
    assert most_uncertain(unc, running, 0.999) == 4
    assert most_uncertain(unc, [False] * 5, 0.3) == -1
    assert nth_tied(np.nextafter(1.0, 0.0), 3) == 2 and nth_tied(0.0, 1) == 0


def test_tie_breaks_are_the_same_one_by_one_or_in_blocks() -> None:
    start = TIE_BLOCK - 3
    many = tie_breaks(4, start, 7)
    assert many.tolist() == [tie_break(4, start + i) for i in range(7)]
    assert tie_breaks(4, 0, 0).size == 0
    assert tie_break(4, 0) != tie_break(5, 0)
    with pytest.raises(ValueError):
        tie_breaks(-1, 0, 1)


# -- the simulator's rules -----------------------------------------------------------------


@pytest.mark.parametrize("method", [Method.GTX, Method.MV, Method.SV])
def test_uncertainty_sample_follows_the_simulator_label_by_label(method: Method) -> None:
    """Errors after every label equal ``simulate_uncertainty``'s on the same draws and ties."""
    examples, labelers, budget = 30, 6, 100
    d = sim.draw(sim.ACCURATE, trials=1, examples=examples, slots=labelers, labelers=labelers,
                 seed=4, tie_steps=budget - examples,
                 experiment=sim.Experiment.UNCERTAINTY)  # fmt: skip
    ties = np.broadcast_to(tie_breaks(11, 0, budget - examples), d.tie.shape)
    d = dataclasses.replace(d, tie=np.ascontiguousarray(ties))
    (curve,) = sim.simulate_uncertainty([(sim.ACCURATE, d, d.accuracy)], budget=budget,
                                        methods=(method,))  # fmt: skip
    labels = d.label[0].astype(np.float64)
    acc = d.accuracy[0][d.labeler[0]]
    mask = np.ones(labels.shape, dtype=bool)
    truth = d.truth[0]
    for b in range(examples, budget + 1):
        s = uncertainty_sample(method, labels, acc, mask, budget=b, kappa=labelers, tau=0.99,
                               seed=11)  # fmt: skip
        assert int(s.n_labels.sum()) == b
        assert int(np.sum(s.posterior.label != truth)) == round(curve.error[0, b - examples] * 30)
        mae = float(np.mean(np.abs(truth - s.posterior.p1)))
        assert mae == pytest.approx(curve.mae[0, b - examples], abs=1e-12)


def test_the_budget_ends_it_and_kappa_caps_each_example() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (12, 4)).astype(np.float64)
    acc = rng.uniform(0.6, 0.95, (12, 4))
    mask = np.ones((12, 4), dtype=bool)
    mask[0] = False  # no labeler at all: never labeled, exhausted
    mask[1, 2:] = False  # two labelers only
    s = uncertainty_sample(Method.GTX, labels, acc, mask, budget=1000, kappa=3, tau=0.99, seed=0)
    assert s.n_labels.tolist() == [0, 2] + [3] * 10  # every example has all it may get
    assert len(s.picks) == int(s.n_labels.sum()) - 11
    assert s.decision[0] == 3 and set(s.decision[1:].tolist()) <= {1, 2, 3}
    few = uncertainty_sample(Method.GTX, labels, acc, mask, budget=5, kappa=3, tau=0.99, seed=0)
    assert few.n_labels.tolist() == [0] + [1] * 5 + [0] * 6  # the first in index order
    assert set(few.decision[6:].tolist()) == {4}  # budget


def test_labels_that_were_not_bought_are_never_read() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, (40, 6)).astype(np.float64)
    acc = rng.uniform(0.55, 0.95, (40, 6))
    mask = np.ones((40, 6), dtype=bool)
    s = uncertainty_sample(Method.GTX, labels, acc, mask, budget=120, kappa=6, tau=0.99, seed=3)
    poisoned = labels.copy()
    unbought = np.arange(6)[None, :] >= s.n_labels[:, None]
    poisoned[unbought] = 1 - poisoned[unbought]
    again = uncertainty_sample(Method.GTX, poisoned, acc, mask, budget=120, kappa=6, tau=0.99,
                               seed=3)  # fmt: skip
    assert again.picks.tolist() == s.picks.tolist()
    assert again.posterior.p1.tolist() == s.posterior.p1.tolist()
    assert unbought.sum() > 0


# -- the replay option on a hand-made dataset ----------------------------------------------

# Two workers per task, of equal accuracy within a task (0.9, 2/3, 3/4 from the assessment set,
# Beta(1, 1)), so the uncertainty after one label does not depend on who came first: t2 (2/3)
# is picked first, then t3 (3/4; its labels disagree, so it ends at 0.5), then t1 (0.9).
ANSWERS = "task,worker,label\nt1,hi,1\nt1,hi2,1\nt2,lo,1\nt2,lo2,1\nt3,mid,0\nt3,mid2,1\n"
TRUTH = "task,truth\nt1,1\nt2,1\nt3,1\n"
GOLD = [f"g{i}" for i in range(1, 9)]
ASSESS = "task,worker,label\n" + "".join(
    [f"{g},hi,1\n{g},hi2,1\n" for g in GOLD]
    + [f"{g},{w},1\n" for g in GOLD[:2] for w in ("mid", "mid2")]
    + [f"{g},{w},1\n" for g in GOLD[:1] for w in ("lo", "lo2")]
)  # fmt: skip
ASSESS_TRUTH = "task,truth\n" + "".join(f"{g},1\n" for g in GOLD)


@pytest.fixture
def hand(tmp_path: Path) -> Path:
    folder = tmp_path / "hand"
    folder.mkdir()
    files = {"answers.csv": ANSWERS, "truth.csv": TRUTH, "assessment_answers.csv": ASSESS,
             "assessment_truth.csv": ASSESS_TRUTH}  # fmt: skip
    for name, body in files.items():
        (folder / name).write_text(body)
    return folder


def _gtx(report: Report) -> Row:
    return next(row for row in report.rows if row.method == "gtx")


def test_replay_uncertainty_on_a_hand_made_dataset(hand: Path) -> None:
    ds = load_dataset(hand)
    a = assess(ds, trial=0)
    assert a.accuracies["hi"] == pytest.approx(0.9) and a.accuracies["lo"] == pytest.approx(2 / 3)
    at = {b: _gtx(replay(ds, trials=1, kappa=2, strategy="uncertainty", budget=b))
          for b in (4, 5, 6)}  # fmt: skip
    assert [at[b].avg_k for b in (4, 5, 6)] == pytest.approx([4 / 3, 5 / 3, 2.0])
    # budget 5: t1 has one label (0.9), t2 two that agree (0.8), t3 two that disagree (0.5)
    assert at[5].accuracy == 1.0  # t3's tie gets label 1
    assert at[5].mae == pytest.approx((0.1 + 0.2 + 0.5) / 3)
    p1_t1 = 0.81 / 0.82  # both of t1's labels
    assert at[6].mae == pytest.approx(((1 - p1_t1) + 0.2 + 0.5) / 3)
    # budget 4: t3 has its first label only, whichever labeler came first
    first = labeler_order(0, "t3", ["mid", "mid2"])[0]
    assert at[4].mae == pytest.approx((0.1 + 0.2 + (0.75 if first == "mid" else 0.25)) / 3)


def test_replay_option_errors_are_one_line(hand: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = load_dataset(hand)
    with pytest.raises(ValueError, match="below the 3 scored tasks"):
        replay(ds, trials=1, strategy="uncertainty", budget=2)
    with pytest.raises(ValueError, match="needs --budget N"):
        replay(ds, trials=1, strategy="uncertainty")
    with pytest.raises(ValueError, match="one-coin accuracies from gold only"):
        replay(ds, trials=1, strategy="uncertainty", budget=5, estimate="em")
    with pytest.raises(ValueError, match="a budget is for strategy uncertainty"):
        replay(ds, trials=1, budget=5)
    rc = cli.main(["replay", str(hand), "--strategy", "uncertainty", "--budget", "2"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1 and "budget 2" in err
    # without --budget: the flag it needs and its floor, not "a budget of at least 1 label"
    assert cli.main(["replay", str(hand), "--strategy", "uncertainty"]) == 2
    err = capsys.readouterr().err
    assert "needs --budget N" in err and "at least one per scored task" in err


def test_cli_prints_the_budget(hand: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["replay", str(hand), "--strategy", "uncertainty", "--budget", "5", "--kappa", "2"]
    assert cli.main([*args, "--trials", "1"]) == 0
    out = capsys.readouterr().out
    assert "uncertainty sampling, budget 5 labels (1.67 per task)" in out
    assert "B=5" in out and "tau=" not in out.split("\n\n")[1]


def _poison(ds: Dataset, keep: set[tuple[str, str]]) -> Dataset:
    answers = {t: {w: (y if (t, w) in keep else 1 - y) for w, y in labels.items()}
               for t, labels in ds.answers.items()}  # fmt: skip
    return dataclasses.replace(ds, answers=answers)


def test_replay_never_reads_a_label_it_did_not_buy(datasets: Path) -> None:
    """rte with every label the strategy did not buy flipped (gold tasks kept): same figures."""
    ds = load_dataset(datasets / "rte")
    a = assess(ds, trial=0)
    q = _queues(ds, a, 0, 0)
    s = uncertainty_sample(Method.GTX, q.labels, q.accuracies, q.mask, budget=2500, kappa=10,
                           tau=0.99, seed=0)  # fmt: skip
    keep = {(t, w) for t in a.gold_tasks for w in ds.answers.get(t, {})}
    keep |= {(t, w) for i, t in enumerate(q.tasks) for w in q.order[i][: s.n_labels[i]]}
    base = replay(ds, trials=1, kappa=10, strategy="uncertainty", budget=2500)
    poisoned = replay(_poison(ds, keep), trials=1, kappa=10, strategy="uncertainty", budget=2500)
    assert _gtx(poisoned) == _gtx(base) and _gtx(base).avg_k == pytest.approx(2500 / 720)
    assert len(keep) < ds.n_labels
    # the check can fail: flipping one label that was bought changes the figures
    bought = (q.tasks[0], q.order[0][0])
    worse = replay(_poison(ds, keep - {bought}), trials=1, kappa=10, strategy="uncertainty",
                   budget=2500)  # fmt: skip
    assert _gtx(worse).mae != _gtx(base).mae


def test_rte_uncertainty_at_the_threshold_runs_labels(datasets: Path) -> None:
    """On rte, at the labels per task threshold GTX uses at tau 0.99, kappa 10 (2 trials)."""
    ds = load_dataset(datasets / "rte")
    threshold = _gtx(replay(ds, trials=2, kappa=10))
    budget = round(threshold.avg_k * 720)
    unc = _gtx(replay(ds, trials=2, kappa=10, strategy="uncertainty", budget=budget))
    assert unc.avg_k == pytest.approx(budget / 720) and unc.n_tasks == 720
    assert unc.accuracy >= threshold.accuracy - 0.02
