"""Section 3.3, vectorised, against the per-label loop of tests/offline/simulate_reference.py."""

from __future__ import annotations

import numpy as np
import pytest

from gtx_stream.core.decision import Decision, decide
from gtx_stream.core.models import Method, two_coin_posterior
from gtx_stream.offline import simulate as sim
from tests.offline import simulate_reference as ref


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


# --- the two-coin model ------------------------------------------------------------------


def _two_coin_loop(
    d: sim.Draws, coins: sim.Coins, trial: int, *, tau: float, kappa: int, budget: int
) -> tuple[int, int, int, float]:
    """Section 3.3's loop (tests.offline.simulate_reference) for GTX with two-coin labelers."""
    n_labelers = coins.sensitivity.shape[1]
    spent = n_labeled = errors = 0
    abs_error = 0.0
    example = 0
    while spent < budget and example < d.shape[1]:
        labels: list[int] = []
        sens: list[float] = []
        spec: list[float] = []
        while True:
            post = two_coin_posterior(np.array([labels]), np.array([sens]), np.array([spec]))
            decision = decide("gtx", post.confidence[0], len(labels), tau, kappa,
                              eligible_left=n_labelers - len(labels),
                              budget_left=budget - spent)  # fmt: skip
            if decision != Decision.ASK.value:
                break
            labeler = int(d.labeler[trial, example, len(labels)])
            labels.append(int(d.label[trial, example, len(labels)]))
            sens.append(float(coins.sensitivity[trial, labeler]))
            spec.append(float(coins.specificity[trial, labeler]))
            spent += 1
        truth = int(d.truth[trial, example])
        n_labeled += 1
        errors += int(post.label[0] != truth)
        abs_error += abs(truth - float(post.p1[0]))
        example += 1
    return n_labeled, spent, errors, abs_error


@pytest.mark.parametrize("estimator", ["true", "beta"])
@pytest.mark.parametrize("cohort", sim.TWO_COIN_COHORTS, ids=lambda c: c.name)
def test_two_coin_gtx_equals_a_per_label_loop(cohort: sim.Cohort, estimator: str) -> None:
    budget, kappa, taus = 160, 5, (0.8, 0.9, 0.95, 0.99)
    d = sim.draw(cohort, trials=2, examples=budget, slots=kappa, seed=4, assess_size=8)
    coins = d.coins(estimator)
    out = sim.simulate_threshold(cohort, d, d.accuracies(estimator), taus=taus, kappa=kappa,
                                 budget=budget, methods=(Method.GTX,), coins=coins)  # fmt: skip
    assert len(out) == len(taus)
    for o in out:
        for t in range(2):
            n, used, errors, abs_error = _two_coin_loop(
                d, coins, t, tau=float(o.tau or 0), kappa=kappa, budget=budget
            )
            mine = (int(o.n_labeled[t]), int(o.labels_used[t]), int(o.errors[t]))
            assert mine == (n, used, errors), (o.tau, t)
            assert float(o.abs_error[t]) == pytest.approx(abs_error, rel=1e-12, abs=1e-9)


def _rows(outcomes: list[sim.Outcome]) -> list[tuple[object, ...]]:
    return [
        (o.cohort, o.method, o.tau, o.k, o.n_labeled.tolist(), o.errors.tolist(),
         o.abs_error.tolist())
        for o in outcomes
    ]  # fmt: skip


def test_two_coin_with_equal_coins_is_one_coin_bit_for_bit() -> None:
    """The paper's cohorts with their true coins (s = t = alpha): the same rows exactly."""
    kw = dict(trials=3, budget=400, taus=(0.9, 0.97, 0.99))
    one = sim.run_threshold(**kw)[sim.Accuracy.TRUE]  # type: ignore[arg-type]
    two = sim.run_threshold(**kw, model="two_coin")[sim.Accuracy.TRUE]  # type: ignore[arg-type]
    assert _rows(one) == _rows(two)


def test_two_coin_changes_gtx_only_and_wins_where_errors_depend_on_the_class() -> None:
    kw = dict(trials=4, budget=3000, taus=(0.95, 0.99), cohorts=sim.ALL_COHORTS,
              estimators=("beta",), assess_size=30)  # fmt: skip
    one = sim.run_threshold(**kw)[sim.Accuracy.BETA]  # type: ignore[arg-type]
    two = sim.run_threshold(**kw, model="two_coin")[sim.Accuracy.BETA]  # type: ignore[arg-type]
    baselines = [i for i, o in enumerate(one) if o.method is not Method.GTX]
    assert _rows([one[i] for i in baselines]) == _rows([two[i] for i in baselines])
    best_one, best_two = sim.best_outcomes(one), sim.best_outcomes(two)
    # accurate on negatives, missing positives: one coin is misled (2.25% against 6.65% with
    # true coins, 100 trials); here 4 trials of 3000 labels
    key = ("misses_positives", Method.GTX)
    assert best_two[key].error.mean() < 0.7 * best_one[key].error.mean()
    assert (
        best_two[("class_conditional", Method.GTX)].error.mean()
        < best_one[("class_conditional", Method.GTX)].error.mean()
    )
