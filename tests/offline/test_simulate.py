"""The simulator of section 3: draws, the vectorised experiments against the per-label loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gtx_stream.cli import main
from gtx_stream.core.models import Method
from gtx_stream.offline import simulate as sim
from tests.offline import simulate_reference as ref

# ---------------------------------------------------------------------------------------------
# draws


def test_draws_are_reproducible_and_trial_t_does_not_depend_on_the_trial_count() -> None:
    a = sim.draw(sim.ACCURATE, trials=3, examples=50, slots=5, seed=4, assess_size=7)
    b = sim.draw(sim.ACCURATE, trials=5, examples=50, slots=5, seed=4, assess_size=7)
    for name in ("accuracy", "assess_correct", "truth", "labeler", "label"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name)[:3], err_msg=name)
    c = sim.draw(sim.ACCURATE, trials=3, examples=50, slots=5, seed=5, assess_size=7)
    assert not np.array_equal(a.label, c.label)
    other = sim.draw(sim.LESS_ACCURATE, trials=3, examples=50, slots=5, seed=4, assess_size=7)
    assert not np.array_equal(a.truth, other.truth)  # cohorts draw independent trials


def test_labelers_are_drawn_without_replacement_and_answer_with_their_accuracy() -> None:
    d = sim.draw(sim.LESS_ACCURATE, trials=4, examples=4000, slots=10, seed=1)
    assert (np.sort(d.labeler, axis=2) == np.arange(10)).all()  # every row a permutation
    acc = d.accuracy[np.arange(4)[:, None, None], d.labeler]
    right = d.label == d.truth[:, :, None]
    assert (d.accuracy >= 0.6).all() and (d.accuracy <= 0.9).all()
    # 160000 answers: the share right is within 0.005 of the mean accuracy (5+ sigma)
    assert abs(right.mean() - acc.mean()) < 0.005
    first = np.bincount(d.labeler[:, :, 0].ravel(), minlength=10) / d.labeler[:, :, 0].size
    assert np.abs(first - 0.1).max() < 0.01  # the first labeler asked is uniform


@pytest.mark.parametrize("labelers", [1, 4, 10, 12])
def test_bitmask_table_and_shifting_pick_the_same_labelers(labelers: int) -> None:
    fast = sim._without_replacement(np.random.default_rng(9), labelers, (500, labelers))
    table_size = sim._TABLE_LABELERS
    try:
        sim._TABLE_LABELERS = 0
        slow = sim._without_replacement(np.random.default_rng(9), labelers, (500, labelers))
    finally:
        sim._TABLE_LABELERS = table_size
    np.testing.assert_array_equal(fast, slow)


def test_accuracies_true_mle_beta() -> None:
    d = sim.draw(sim.ACCURATE, trials=2, examples=10, slots=3, seed=0, assess_size=4)
    np.testing.assert_array_equal(d.accuracies("true"), d.accuracy)
    np.testing.assert_allclose(d.accuracies("mle"), d.assess_correct / 4)
    np.testing.assert_allclose(d.accuracies("beta"), (d.assess_correct + 1) / 6)
    no_gold = sim.draw(sim.ACCURATE, trials=2, examples=10, slots=3, seed=0)
    with pytest.raises(ValueError, match="assessment"):
        no_gold.accuracies("beta")


# ---------------------------------------------------------------------------------------------
# section 3.3 against the per-label loop


def _threshold_against_loop(
    cohort: sim.Cohort,
    *,
    budget: int,
    kappa: int,
    labelers: int,
    taus: tuple[float, ...],
    estimator: str,
    seed: int,
    trials: int = 2,
) -> int:
    d = sim.draw(
        cohort,
        trials=trials,
        examples=budget,
        slots=kappa,
        labelers=labelers,
        seed=seed,
        assess_size=6,
    )
    acc = d.accuracies(estimator)
    outcomes = sim.simulate_threshold(cohort, d, acc, taus=taus, kappa=kappa, budget=budget)
    assert len(outcomes) == 2 * len(taus) + 2 * kappa
    for o in outcomes:
        for t in range(trials):
            n, used, errors, abs_error = ref.threshold_trial(
                o.method, d, acc, t, tau=o.tau, k=o.k, kappa=kappa, budget=budget
            )
            where = f"{o.method} tau={o.tau} k={o.k} trial {t}"
            assert (int(o.n_labeled[t]), int(o.labels_used[t]), int(o.errors[t])) == (
                n,
                used,
                errors,
            ), where
            assert float(o.abs_error[t]) == pytest.approx(abs_error, rel=1e-12, abs=1e-9), where
    return len(outcomes)


@pytest.mark.parametrize("estimator", ["true", "mle", "beta"])
@pytest.mark.parametrize("cohort", sim.COHORTS, ids=lambda c: c.name)
def test_threshold_equals_the_per_label_loop(cohort: sim.Cohort, estimator: str) -> None:
    _threshold_against_loop(
        cohort,
        budget=150,
        kappa=5,
        labelers=10,
        taus=sim.PAPER_TAUS,
        estimator=estimator,
        seed=3,
    )


@pytest.mark.parametrize(
    "budget,kappa,labelers,taus",
    [
        (1, 1, 1, (0.9,)),
        (7, 3, 3, (0.6, 0.8)),
        (64, 2, 5, (0.75, 0.9, 0.95)),
        (65, 4, 4, (0.55, 0.97)),
        (203, 5, 10, (0.85, 0.9, 0.999)),
        (130, 3, 13, (0.8, 0.95)),  # more labelers than the bitmask table takes
    ],
)
def test_threshold_edge_cases_equal_the_loop(
    budget: int, kappa: int, labelers: int, taus: tuple[float, ...]
) -> None:
    for seed, cohort in enumerate(sim.COHORTS):
        _threshold_against_loop(
            cohort,
            budget=budget,
            kappa=kappa,
            labelers=labelers,
            taus=taus,
            estimator="mle",
            seed=seed,
        )


def test_fixed_k_labels_ceil_budget_over_k_examples() -> None:
    d = sim.draw(sim.ACCURATE, trials=3, examples=100, slots=5, seed=0)
    out = sim.simulate_threshold(sim.ACCURATE, d, d.accuracy, taus=(0.9,), budget=100)
    for o in out:
        assert (o.labels_used == 100).all()
        if o.k is not None:
            assert (o.n_labeled == -(-100 // o.k)).all()


def test_kappa_one_labels_every_example_once() -> None:
    d = sim.draw(sim.ACCURATE, trials=2, examples=300, slots=1, seed=0)
    out = sim.simulate_threshold(sim.ACCURATE, d, d.accuracy, taus=(0.9, 0.99), kappa=1, budget=300)
    assert all((o.n_labeled == 300).all() and (o.avg_k == 1).all() for o in out)


def test_threshold_refuses_a_pool_smaller_than_the_budget() -> None:
    d = sim.draw(sim.ACCURATE, trials=1, examples=50, slots=5, seed=0)
    with pytest.raises(ValueError, match="budget"):
        sim.simulate_threshold(sim.ACCURATE, d, d.accuracy, budget=60)
    with pytest.raises(ValueError, match="taus"):
        sim.simulate_threshold(sim.ACCURATE, d, d.accuracy, taus=(0.99, 0.9), budget=50)


def test_table1_shape_on_a_small_run() -> None:
    """20 trials of section 3.3: the figures the paper reports, with room for 20 trials."""
    results = sim.run_threshold(trials=20, seed=0)[sim.Estimator.TRUE]
    best = sim.best_outcomes(results)
    gtx, sv = best[("accurate", Method.GTX)], best[("accurate", Method.SV)]
    assert gtx.tau == 0.99 and 2.6 < gtx.avg_k.mean() < 3.0  # paper: 2.75
    assert 0.005 < gtx.error.mean() < 0.013 and gtx.mae.mean() < 0.025  # 0.83%, 1.42%
    assert sv.tau == 0.99 and 4.6 < sv.avg_k.mean() < 4.95  # paper: 4.78
    for m in (Method.MV, Method.WMV):
        assert best[("accurate", m)].k == 5 and best[("less_accurate", m)].k == 5
    less_gtx = best[("less_accurate", Method.GTX)]
    assert 4.0 < less_gtx.avg_k.mean() < 4.8 and less_gtx.mae.mean() < 0.18  # 4.07, 13.9%
    assert (best[("less_accurate", Method.SV)].avg_k == 5).all()  # SV never reaches its tau


# ---------------------------------------------------------------------------------------------
# section 3.4 against the per-label loop


@pytest.mark.parametrize("estimator,fewest", [("true", False), ("mle", False), ("true", True)])
def test_uncertainty_equals_the_per_label_loop(estimator: str, fewest: bool) -> None:
    examples, budget, trials = 30, 90, 2
    cohorts = []
    for cohort in sim.COHORTS:
        d = sim.draw(
            cohort,
            trials=trials,
            examples=examples,
            slots=10,
            seed=2,
            assess_size=5,
            tie_steps=budget - examples,
            experiment=sim.Experiment.UNCERTAINTY,
        )
        cohorts.append((cohort, d, d.accuracies(estimator)))
    curves = sim.simulate_uncertainty(cohorts, budget=budget, fewest_first=fewest)
    assert len(curves) == 4 * len(cohorts)
    for c in curves:
        _, d, acc = next(x for x in cohorts if x[0].name == c.cohort)
        np.testing.assert_array_equal(c.labels, np.arange(examples, budget + 1))
        for t in range(trials):
            errors, abs_error = ref.uncertainty_trial(
                c.method, d, acc, t, budget=budget, fewest_first=fewest
            )
            np.testing.assert_array_equal(c.error[t] * examples, errors)
            np.testing.assert_allclose(c.mae[t] * examples, abs_error, rtol=0, atol=1e-9)


def test_uncertainty_spends_labels_on_the_uncertain_and_never_repeats_a_labeler() -> None:
    d = sim.draw(
        sim.ACCURATE,
        trials=1,
        examples=20,
        slots=3,
        labelers=3,
        seed=0,
        tie_steps=40,
        experiment=sim.Experiment.UNCERTAINTY,
    )
    # budget = examples x labelers: every example ends with all three labelers, none twice
    curves = sim.simulate_uncertainty([(sim.ACCURATE, d, d.accuracy)], budget=60)
    for c in curves:
        errors, _ = ref.uncertainty_trial(c.method, d, d.accuracy, 0, budget=60)
        assert c.error[0, -1] * 20 == errors[-1]
    with pytest.raises(ValueError, match="budget"):
        sim.simulate_uncertainty([(sim.ACCURATE, d, d.accuracy)], budget=61)


@pytest.mark.parametrize("fewest", [False, True])
def test_tie_break_picks_the_nth_tied_example_in_order(fewest: bool) -> None:
    rng = np.random.default_rng(0)
    keys = rng.choice([0.0, 0.25, 0.5, -1.0], size=(50, 7 * 6))
    keys[0] = -1.0
    keys[0, 40] = 0.0  # one candidate only
    rank = rng.integers(1, 4, size=keys.shape) if fewest else np.zeros(keys.shape, np.int64)
    u = rng.random(50)
    blocks = sim._Blocks(keys.reshape(50, 7, 6).copy(), rank.reshape(50, 7, 6).copy())
    for step in range(3):
        picked = blocks.pick(u)
        for s in range(50):
            top = keys[s] == keys[s].max()
            tied = np.flatnonzero(top & (rank[s] == rank[s][top].min()))
            assert picked[s] == tied[min(int(u[s] * len(tied)), len(tied) - 1)], (step, s)
        # change the picked entries and check the summaries follow
        new_key = rng.choice([0.0, 0.25, 0.5], size=50)
        new_rank = rank[np.arange(50), picked] + 1 if fewest else np.zeros(50, np.int64)
        keys[np.arange(50), picked], rank[np.arange(50), picked] = new_key, new_rank
        blocks.set(picked, new_key, new_rank)


# ---------------------------------------------------------------------------------------------
# command line


def test_cli_threshold_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["simulate", "threshold", "--trials", "2", "--budget", "200", "--taus", "0.9,0.99"]
        + ["--accuracy", "true,beta", "--assess-size", "5", "--json"]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["taus"] == [0.9, 0.99] and doc["budget"] == 200
    # 2 estimators x 2 cohorts x (GTX, SV at 2 taus + MV, WMV at k = 1..5)
    assert len(doc["rows"]) == 2 * 2 * (2 * 2 + 2 * 5)
    row = doc["rows"][0]
    for field in ("cohort", "method", "tau", "k", "avg_k", "n_labeled", "error", "error_se"):
        assert field in row
    for field in ("mae", "mae_se", "trials", "accuracy", "assess_size", "best"):
        assert field in row
    bests = [r for r in doc["rows"] if r["best"]]
    assert len(bests) == 2 * 2 * 4


def test_cli_threshold_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "threshold", "--trials", "2", "--budget", "100", "--cohort", "accurate"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "More accurate labelers" in out and "Less accurate" not in out
    assert [line.split()[0] for line in out.splitlines()[2:6]] == ["MV", "WMV", "SV", "GTX"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--taus", "0.99,0.9"], "increasing"),
        (["--taus", "0.4:0.9:0.1"], "(0.5, 1)"),
        (["--accuracy", "mle", "--assess-size", "0"], "assess-size"),
        (["--accuracy", "exact"], "not one of"),
        (["--kappa", "11"], "kappa"),
        (["--trials", "0"], "trials"),
    ],
)
def test_cli_threshold_bad_values(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "threshold", "--budget", "50", *extra]) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


def test_cli_uncertainty_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["simulate", "uncertainty", "--trials", "2", "--examples", "40", "--budget", "100"]
        + ["--curve-every", "20", "--json", "--plot", str(tmp_path)]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["rows"]) == 8 and doc["rows"][0]["avg_k"] == 2.5
    curve = doc["curves"][0]
    assert curve["labels"] == [40, 60, 80, 100]
    assert len(curve["error"]) == len(curve["mae_se"]) == 4
    assert (tmp_path / "figure2.png").stat().st_size > 1000
    assert doc["tie_break"] == "random"
    rc = main(
        ["simulate", "threshold", "--trials", "2", "--budget", "100", "--plot", str(tmp_path)]
    )
    assert rc == 0
    assert (tmp_path / "figure1.png").stat().st_size > 1000


def test_cli_uncertainty_table_and_bad_budget(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "uncertainty", "--trials", "1", "--examples", "20", "--budget"]
    assert main([*args, "50"]) == 0
    out = capsys.readouterr().out
    assert "MV" in out and "GTX" in out and "20 examples" in out
    assert main([*args, "201"]) == 2
    assert "--budget" in capsys.readouterr().err
