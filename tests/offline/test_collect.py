"""Section 4's label collection (gtx_stream.offline.simulate.collect) is the simulator's.

On the same draws it labels the same N examples with the same labels as the simulator counts
(``simulate_threshold``) and as the per-label reference loop gives, example by example; and it
handles a pool that runs out before the budget, which the simulator never meets.
"""

from __future__ import annotations

import numpy as np
import pytest

import gtx_stream.offline.simulate as sim
from gtx_stream.core.models import Method
from gtx_stream.offline.simulate.collect import collect
from tests.offline import simulate_reference as ref

TAU, KAPPA = 0.95, 5


def _draws(cohort: sim.Cohort, examples: int, trials: int = 3, **kw: object) -> sim.Draws:
    return sim.draw(cohort, trials=trials, examples=examples, slots=KAPPA, seed=7,
                    assess_size=100, **kw)  # type: ignore[arg-type]  # fmt: skip


@pytest.mark.parametrize("cohort", sim.COHORTS, ids=lambda c: c.name)
def test_collection_equals_the_simulators_counts(cohort: sim.Cohort) -> None:
    budget = 600
    d = _draws(cohort, examples=budget)
    acc = d.accuracies("beta")
    outcomes = sim.simulate_threshold(cohort, d, acc, taus=[TAU], kappa=KAPPA, budget=budget)
    seen = set()
    for o in outcomes:
        if o.k not in (None, KAPPA):
            continue  # MV and WMV take k = kappa in section 4
        seen.add(o.method)
        got = collect(o.method, d, acc, budget=budget, kappa=KAPPA, tau=TAU)
        for t, c in enumerate(got):
            assert (c.n_labeled, c.labels_used) == (int(o.n_labeled[t]), int(o.labels_used[t]))
            assert c.errors(d.truth[t]) == int(o.errors[t]), (o.method, t)
            mae = np.abs(d.truth[t, : c.n_labeled] - c.p1).sum()
            assert mae == pytest.approx(float(o.abs_error[t]), rel=1e-12, abs=1e-9)
    assert seen == set(Method)


@pytest.mark.parametrize("method", list(Method), ids=str)
@pytest.mark.parametrize("budget", [1, 7, 250, 2000])
def test_collection_equals_the_per_label_loop_example_by_example(
    method: Method, budget: int
) -> None:
    # 300 examples: the larger budgets run the pool out
    d = _draws(sim.ACCURATE, examples=300)
    acc = d.accuracies("beta")
    got = collect(method, d, acc, budget=budget, kappa=KAPPA, tau=TAU)
    for t, c in enumerate(got):
        rows: list[tuple[int, float, int]] = []
        n, used, _, _ = ref.threshold_trial(method, d, acc, t, tau=TAU, k=KAPPA, kappa=KAPPA,
                                            budget=budget, record=rows)  # fmt: skip
        assert (c.n_labeled, c.labels_used) == (n, used)
        assert c.label.tolist() == [r[0] for r in rows]
        np.testing.assert_allclose(c.p1, [r[1] for r in rows], rtol=1e-12, atol=1e-12)
        assert c.asked.tolist() == [r[2] for r in rows]
        if budget == 2000:
            assert n == 300 and used < budget  # every image labeled, budget left over


def test_known_truth_keeps_everything_else_the_simulator_draws() -> None:
    plain = _draws(sim.LESS_ACCURATE, examples=200)
    truth = (np.arange(200) % 3 == 0).astype(np.int8)
    given = _draws(sim.LESS_ACCURATE, examples=200, truth=truth)
    assert (given.truth == truth).all()
    np.testing.assert_array_equal(given.accuracy, plain.accuracy)
    np.testing.assert_array_equal(given.labeler, plain.labeler)
    np.testing.assert_array_equal(given.assess_correct, plain.assess_correct)
    # each answer is right exactly where the simulator's is right
    right_plain = plain.label == plain.truth[:, :, None]
    right_given = given.label == given.truth[:, :, None]
    np.testing.assert_array_equal(right_given, right_plain)
    with pytest.raises(ValueError, match="0 and 1"):
        _draws(sim.LESS_ACCURATE, examples=3, truth=np.array([0, 2, 1]))


def test_mv_labels_more_examples_only_when_gtx_needs_more_labels_each() -> None:
    d = _draws(sim.ACCURATE, examples=2000, trials=2)
    acc = d.accuracies("beta")
    gtx = collect("gtx", d, acc, budget=1000)
    mv = collect("mv", d, acc, budget=1000)
    assert all(c.n_labeled == 200 for c in mv)  # 1000 / 5
    # accurate labelers: GTX stops most examples after two or three labels
    assert all(c.n_labeled > 300 for c in gtx)
    assert all(c.labels_used == 1000 for c in gtx + mv)
