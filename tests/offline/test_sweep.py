"""The simulator's sweep cannot drift from the core decision rule.

For every tau of a sweep and every method, the vectorised simulator must stop each example
where :func:`gtx_stream.core.decision.threshold_stop` (that is, :func:`decide` after every label)
stops it on the same label sequence, with the same posterior, and serve examples in order
until the budget is spent. The sweep asks :func:`~gtx_stream.core.decision.taus_reached`
instead of ``decide`` (one binary search for all taus); this holds the two to each other.
The taus include confidences that examples actually reach, so that "confidence equal to tau"
is exercised, not only the taus of the paper.
"""

from __future__ import annotations

import numpy as np
import pytest

from gtx_stream.core.decision import Decision, threshold_stop
from gtx_stream.core.models import FloatArray, Method, aggregate
from gtx_stream.offline import simulate as sim
from gtx_stream.offline.simulate.sweep import sweep

BUDGET, KAPPA, LABELERS, TRIALS = 400, 5, 10, 3


def _draws(cohort: sim.Cohort, seed: int) -> sim.Draws:
    return sim.draw(
        cohort,
        trials=TRIALS,
        examples=BUDGET,
        slots=KAPPA,
        labelers=LABELERS,
        seed=seed,
        assess_size=6,
    )


def _sequences(draws: sim.Draws, acc: FloatArray, trial: int) -> tuple[FloatArray, FloatArray]:
    """Each example's labels in the order its labelers are asked, and those labelers' accuracies."""
    return draws.label[trial].astype(np.float64), acc[trial][draws.labeler[trial]]


def _taus(method: Method, draws: sim.Draws, acc: FloatArray) -> tuple[float, ...]:
    """The paper's taus plus confidences that examples of trial 0 reach after 1 to 3 labels."""
    labels, accs = _sequences(draws, acc, 0)
    reached = [aggregate(method, labels[:40, :t], accs[:40, :t]).confidence for t in (1, 2, 3)]
    exact = {float(c) for c in np.concatenate(reached) if 0.5 < c < 1.0}
    rng = np.random.default_rng(0)
    picked = rng.choice(sorted(exact), size=min(12, len(exact)), replace=False)
    return tuple(sorted({*sim.PAPER_TAUS, *map(float, picked)}))


def _served(n_labels: np.ndarray, budget: int) -> tuple[int, int]:
    """Examples served in order until the budget is spent: (examples labeled, labels of last)."""
    spent = np.cumsum(n_labels)
    last = int(np.searchsorted(spent, budget))  # the example on which the budget ends
    return last + 1, budget - int(spent[last - 1] if last else 0)


CASES = [
    pytest.param(cohort, estimator, id=f"{cohort.name}-{estimator}")
    for cohort in sim.COHORTS
    for estimator in ("true", "mle")
]


@pytest.mark.parametrize("method", [Method.GTX, Method.SV])
@pytest.mark.parametrize(("cohort", "estimator"), CASES)
def test_the_sweep_stops_every_example_where_the_rule_does(
    cohort: sim.Cohort, estimator: str, method: Method
) -> None:
    draws = _draws(cohort, seed=11)
    acc = draws.accuracies(estimator)
    taus = _taus(method, draws, acc)
    sw = sweep(method, draws, acc, taus, KAPPA, BUDGET)
    outcomes = {
        o.tau: o
        for o in sim.simulate_threshold(
            cohort, draws, acc, taus=taus, kappa=KAPPA, budget=BUDGET, methods=[method]
        )
    }
    on_the_edge = 0  # examples that stop with a confidence exactly equal to tau
    for q, tau in enumerate(taus):
        stops = sw.stops(q)
        for t in range(TRIALS):
            labels, accs = _sequences(draws, acc, t)
            rule = threshold_stop(method, labels, accs, tau, KAPPA)
            n, last_labels = _served(rule.n_labels, BUDGET)
            where = f"{method} tau={tau} trial {t}"
            assert stops.shape[1] >= n, f"{where}: the budget reaches examples the sweep left"
            np.testing.assert_array_equal(stops[t, :n], rule.n_labels[:n], err_msg=where)
            level, example = stops[t, :n] - 1, np.arange(n)
            np.testing.assert_array_equal(sw.p1[level, t, example], rule.posterior.p1[:n], where)
            np.testing.assert_array_equal(sw.hard[level, t, example], rule.posterior.label[:n])
            early = rule.n_labels[:n] < KAPPA
            assert (rule.decision[:n][early] == Decision.CONFIDENT.value).all(), where
            on_the_edge += int((rule.posterior.confidence[:n][early] == tau).sum())
            # the budget: the same examples labeled, the last one cut short the same way
            o = outcomes[tau]
            assert int(o.n_labeled[t]) == n and int(o.labels_used[t]) == BUDGET, where
            truth = draws.truth[t, :n]
            hard = rule.posterior.label[:n].copy()
            if last_labels < rule.n_labels[n - 1]:
                cut = aggregate(
                    method, labels[n - 1 : n, :last_labels], accs[n - 1 : n, :last_labels]
                )
                hard[n - 1] = cut.label[0]
            assert int(o.errors[t]) == int((hard != truth).sum()), where
    assert on_the_edge > 0, "no example stopped exactly at tau: the edge case went untested"


@pytest.mark.parametrize("method", [Method.MV, Method.WMV])
@pytest.mark.parametrize(("cohort", "estimator"), CASES)
def test_fixed_k_is_the_rule_with_kappa_k_at_every_tau(
    cohort: sim.Cohort, estimator: str, method: Method
) -> None:
    draws = _draws(cohort, seed=12)
    acc = draws.accuracies(estimator)
    outcomes = {
        o.k: o
        for o in sim.simulate_threshold(
            cohort, draws, acc, taus=sim.PAPER_TAUS, kappa=KAPPA, budget=BUDGET, methods=[method]
        )
    }
    assert sorted(outcomes) == list(range(1, KAPPA + 1))
    for k, o in outcomes.items():
        for t in range(TRIALS):
            labels, accs = _sequences(draws, acc, t)
            for tau in sim.PAPER_TAUS:  # MV and WMV ignore tau: the same stops at every tau
                rule = threshold_stop(method, labels, accs, tau, k)
                assert (rule.n_labels == k).all() and (rule.decision == Decision.KAPPA.value).all()
            n, last_labels = _served(rule.n_labels, BUDGET)
            assert int(o.n_labeled[t]) == n == -(-BUDGET // k)
            hard = rule.posterior.label[:n].copy()
            if last_labels < k:
                cut = aggregate(
                    method, labels[n - 1 : n, :last_labels], accs[n - 1 : n, :last_labels]
                )
                hard[n - 1] = cut.label[0]
            assert int(o.errors[t]) == int((hard != draws.truth[t, :n]).sum()), (method, k, t)


def test_mv_and_wmv_have_no_sweep() -> None:
    draws = _draws(sim.ACCURATE, seed=0)
    with pytest.raises(ValueError, match="fixed number of labels"):
        sweep(Method.MV, draws, draws.accuracy, sim.PAPER_TAUS, KAPPA, BUDGET)
