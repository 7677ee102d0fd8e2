"""The replay as a stream: two-coin labelers, EM refits from bought labels only, truthless tasks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gtx_stream import cli
from gtx_stream.core.datasets import Dataset, load_dataset
from gtx_stream.core.decision import threshold_stop
from gtx_stream.core.models import Method, ModelName
from gtx_stream.offline.replay import assess, replay, replay_tasks
from gtx_stream.offline.replay_queues import Order, arrival_order
from gtx_stream.offline.replay_stream import (
    Estimate,
    Outcome,
    Setup,
    gold_params,
    setup,
    stream,
    two_coin_stop,
)

N_TASKS, N_WORKERS, PER_TASK = 80, 10, 6


def _crowd(tmp_path: Path, name: str = "crowd", truthless: int = 0) -> Path:
    """A seeded two-coin crowd: 80 tasks, 6 of 10 workers each; the last ``truthless`` untruthed."""
    rng = np.random.default_rng(7)
    sens = rng.uniform(0.55, 0.95, N_WORKERS)
    spec = rng.uniform(0.55, 0.95, N_WORKERS)
    truth = rng.integers(0, 2, N_TASKS)
    rows = []
    for i in range(N_TASKS):
        for j in rng.choice(N_WORKERS, PER_TASK, replace=False):
            right = rng.random() < (sens[j] if truth[i] == 1 else spec[j])
            rows.append(f"t{i},w{j},{truth[i] if right else 1 - truth[i]}\n")
    folder = tmp_path / name
    folder.mkdir()
    (folder / "answers.csv").write_text("task,worker,label\n" + "".join(rows))
    kept = range(N_TASKS - truthless)
    (folder / "truth.csv").write_text("task,truth\n" + "".join(f"t{i},{truth[i]}\n" for i in kept))
    return folder


def _run(
    ds: Dataset,
    method: Method,
    model: ModelName,
    estimate: Estimate,
    every: int = 20,
    order: Order = Order.RANDOM,
) -> tuple[Outcome, Setup]:
    a = assess(ds, seed=3, trial=1, assess_fraction=0.2)
    s = setup(ds, a.gold_tasks, a.scored_tasks, 3, 1)
    initial = gold_params(ds, s, model, "beta", a.accuracies)
    o = stream(method, s, model, estimate, initial, tau=0.95, kappa=4, every=every, order=order)
    return o, s


def _bought(o: Outcome, s: Setup) -> set[tuple[str, str]]:
    return {
        (task, s.workers[j])
        for task, asked, n in zip(s.tasks, o.worker, o.n_labels, strict=True)
        for j in asked[:n]
    }


@pytest.mark.parametrize("order", list(Order), ids=str)
@pytest.mark.parametrize("model", [ModelName.ONE_COIN, ModelName.TWO_COIN], ids=str)
def test_em_never_reads_a_label_it_did_not_request(
    tmp_path: Path, model: ModelName, order: Order
) -> None:
    clean = _crowd(tmp_path)
    ds = load_dataset(clean)
    o, s = _run(ds, Method.GTX, model, Estimate.EM, order=order)
    bought = _bought(o, s)
    assert o.fits >= 5 and len(bought) < ds.n_labels - 100  # refits, and many labels unbought
    # poison every label of a streamed task that was not bought: flip it
    streamed = set(s.tasks)
    lines = clean.joinpath("answers.csv").read_text().splitlines()
    out = [lines[0]]
    for line in lines[1:]:
        task, worker, label = line.split(",")
        if task in streamed and (task, worker) not in bought:
            label = str(1 - int(label))
        out.append(f"{task},{worker},{label}")
    poisoned_dir = tmp_path / "poisoned"
    poisoned_dir.mkdir()
    poisoned_dir.joinpath("answers.csv").write_text("\n".join(out) + "\n")
    poisoned_dir.joinpath("truth.csv").write_text(clean.joinpath("truth.csv").read_text())
    poisoned = load_dataset(poisoned_dir)
    p, _ = _run(poisoned, Method.GTX, model, Estimate.EM, order=order)
    assert _bought(p, s) == bought
    np.testing.assert_array_equal(p.p1, o.p1)
    assert [n for n, _ in p.snapshots] == [n for n, _ in o.snapshots]
    for (_, a), (_, b) in zip(p.snapshots, o.snapshots, strict=True):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
    # the poison is strong enough to show: DS-all, which reads every label, moves
    em = {"trials": 1, "model": model, "estimate": "em", "order": order}
    assert replay(poisoned, **em).rows[-1] != replay(ds, **em).rows[-1]  # type: ignore[arg-type]


def test_em_refits_after_every_n_labels_bought(tmp_path: Path) -> None:
    o, _ = _run(load_dataset(_crowd(tmp_path)), Method.GTX, ModelName.TWO_COIN, Estimate.EM, 30)
    counts = [n for n, _ in o.snapshots]
    assert counts[0] == 0 and len(counts) == o.fits + 1
    gaps = np.diff(counts)
    assert np.all(gaps >= 30) and np.all(gaps < 30 + 4)  # the fit follows the task crossing N
    assert counts[-1] <= int(o.n_labels.sum()) < counts[-1] + 30


def test_each_task_is_decided_with_the_parameters_current_when_it_arrives(tmp_path: Path) -> None:
    ds = load_dataset(_crowd(tmp_path))
    o, s = _run(ds, Method.GTX, ModelName.TWO_COIN, Estimate.EM, 25)
    starts = np.concatenate([[0], np.cumsum(o.n_labels)])  # labels bought before task i
    for i in range(len(o.n_labels)):
        bought_before = int(starts[i])
        params = [p for n, p in o.snapshots if n <= bought_before][-1]
        w = s.worker[i : i + 1]
        one = two_coin_stop(
            s.labels[i : i + 1],
            params["sensitivity"][w],
            params["specificity"][w],
            s.mask[i : i + 1],
            0.95,
            4,
        )
        assert int(one.n_labels[0]) == o.n_labels[i] and one.posterior.p1[0] == o.p1[i]


def test_the_stream_with_gold_one_coin_equals_the_batch_replay(tmp_path: Path) -> None:
    ds = load_dataset(_crowd(tmp_path))
    a = assess(ds, seed=3, trial=1, assess_fraction=0.2)
    s = setup(ds, a.gold_tasks, a.scored_tasks, 3, 1)
    initial = gold_params(ds, s, ModelName.ONE_COIN, "beta", a.accuracies)
    for method in (Method.GTX, Method.SV, Method.WMV):
        o = stream(method, s, ModelName.ONE_COIN, Estimate.GOLD, initial, tau=0.95, kappa=4)
        batch = {
            r.task: r
            for r in replay_tasks(
                ds, method, tau=0.95, kappa=4, seed=3, trial=1, assess_fraction=0.2
            )
        }
        for task, n, p1 in zip(s.tasks, o.n_labels, o.p1, strict=True):
            assert (batch[task].n_labels, batch[task].p1) == (n, p1)


def test_two_coin_stop_with_symmetric_coins_is_the_one_coin_stop() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (50, 6)).astype(float)
    acc = rng.uniform(0.3, 0.99, (50, 6))
    mask = np.arange(6) < rng.integers(0, 7, 50)[:, None]
    one = threshold_stop("gtx", labels, acc, 0.97, 5, mask)
    two = two_coin_stop(labels, acc, acc, mask, 0.97, 5)
    np.testing.assert_array_equal(one.n_labels, two.n_labels)
    np.testing.assert_array_equal(one.decision, two.decision)
    np.testing.assert_array_equal(one.posterior.p1, two.posterior.p1)


# the tiny folder of test_replay: worker d answered no assessment item (Beta estimate 0.5)
ASSESSMENT = {
    "assessment_truth.csv": "task,truth\nq1,1\nq2,0\nq3,1\nq4,0\n",
    "assessment_answers.csv": "task,worker,label\n"
    + "q1,a,1\nq2,a,0\nq3,a,1\nq4,a,0\nq1,b,1\nq2,b,0\nq3,b,1\nq4,b,1\nq1,c,1\nq2,c,1\n",
    "truth.csv": "task,truth\nt1,1\nt2,0\nt3,1\n",
    "answers.csv": "task,worker,label\nt1,a,1\nt1,d,1\nt2,a,0\nt2,d,0\nt3,b,1\nt3,d,1\nx9,d,0\n",
}


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "small"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_worker_without_gold_gets_the_pooled_prior_not_one_half(tmp_path: Path) -> None:
    ds = load_dataset(_folder(tmp_path, ASSESSMENT), truthless=True)
    a = assess(ds)
    assert a.accuracies["d"] == 0.5  # gold only: no weight
    s = setup(ds, a.gold_tasks, a.scored_tasks, 0, 0)
    initial = gold_params(ds, s, ModelName.ONE_COIN, "beta", a.accuracies)
    o = stream(Method.GTX, s, ModelName.ONE_COIN, Estimate.EM, initial, tau=0.9, kappa=2)
    d = s.workers.index("d")
    first = o.snapshots[0][1]["accuracy"]
    assert first[d] > 0.5  # the cohort's mean (a, b, c are better than chance on gold)
    assert first[d] == pytest.approx(np.mean(np.delete(first, d)), abs=0.1)


def test_tasks_without_truth_are_labeled_and_count_for_em_but_are_not_scored(
    tmp_path: Path,
) -> None:
    with_open = load_dataset(_crowd(tmp_path, "open", truthless=20), truthless=True)
    assert len(with_open.truthless) == 20
    a = assess(with_open, seed=3, trial=1, assess_fraction=0.2)
    assert not set(with_open.truthless) & set(a.scored_tasks + a.gold_tasks)
    o, s = _run(with_open, Method.GTX, ModelName.TWO_COIN, Estimate.EM)
    assert set(with_open.truthless) <= set(s.tasks)
    assert int(np.sum(~s.scored)) == 20 and o.n_labels[~s.scored].sum() > 0
    report = replay(with_open, trials=1, model="two_coin", estimate="em", assess_fraction=0.2)
    assert report.truthless == 20
    assert {row.n_tasks for row in report.rows} == {len(a.scored_tasks)}


def test_arrival_order_is_seeded_and_independent_of_input_order() -> None:
    tasks = [f"t{i}" for i in range(30)]
    assert arrival_order(tasks, 1, 2) == arrival_order(list(reversed(tasks)), 2, 1)
    assert arrival_order(tasks, 1, 2) != arrival_order(tasks, 1, 3)


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(["replay", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_two_coin_em_reports_ds_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _crowd(tmp_path, truthless=5)
    em = ["--model", "two_coin", "--estimate", "em", "--every", "40"]
    args = [str(folder), *em, "--trials", "2", "--quiet"]
    rc, out, err = _cli([*args, "--assess-fraction", "0.2"], capsys)
    assert rc == 0 and err == ""
    assert "refit every 40 labels" in out and "get the pooled prior" in out
    assert "tasks without a truth: 5, labeled, not scored" in out and "ds-all" in out
    rc, out, _ = _cli([*args, "--json"], capsys)
    doc = json.loads(out)
    assert (doc["model"], doc["estimate"], doc["every"]) == ("two_coin", "em", 40)
    assert [r["method"] for r in doc["rows"]][-2:] == ["mv-all", "ds-all"]
    rc, _, err = _cli([str(folder), "--estimate", "em", "--every", "0"], capsys)
    assert rc == 2 and "cadence" in err and err.count("\n") == 1
    with pytest.raises(SystemExit) as info:
        _cli([str(folder), "--model", "three_coin"], capsys)
    assert info.value.code == 2 and "invalid choice" in capsys.readouterr().err
