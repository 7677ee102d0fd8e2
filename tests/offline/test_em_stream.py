"""Section 3.3 with parameters learned by EM as labels are bought (offline.simulate.em_stream).

The vectorised stream against a per-label loop that refits at the same moments; poisoned
labels that the rule never asked for change nothing; without a refit it is the simulator with
the gold-only EM parameters; the gold items EM gets are the draws' counts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gtx_stream.core.decision import Decision, decide
from gtx_stream.core.models import Method, ModelName, aggregate, two_coin_posterior
from gtx_stream.offline import simulate as sim
from gtx_stream.offline.simulate.em_stream import _Trial, em_stream, gold_items


def _draws(cohort: sim.Cohort, budget: int, kappa: int = 5, trials: int = 2) -> sim.Draws:
    return sim.draw(cohort, trials=trials, examples=budget, slots=kappa, seed=11, assess_size=6)


def _loop(
    method: Method,
    d: sim.Draws,
    trial: int,
    *,
    tau: float | None,
    k: int | None,
    kappa: int,
    budget: int,
    every: int,
    model: ModelName,
) -> tuple[int, int, int, float, int]:
    """One trial, one label at a time: (labeled, labels, errors, sum |y - p1|, fits)."""
    em_model = model if method is Method.GTX else ModelName.ONE_COIN
    run = _Trial(gold_items(d, trial), em_model, d.accuracy.shape[1])
    params = run.fit(0)
    cap = kappa if method.uses_threshold else int(k or 0)
    spent = since = n_labeled = errors = 0
    abs_error = 0.0
    example = 0
    while spent < budget and example < d.shape[1]:
        labels: list[int] = []
        who: list[int] = []
        while True:
            lab = np.array([labels], dtype=np.float64)
            if em_model is ModelName.TWO_COIN:
                post = two_coin_posterior(
                    lab, params["sensitivity"][[who]], params["specificity"][[who]]
                )
            else:
                post = aggregate(method, lab, params["accuracy"][[who]])
            decision = decide(method, post.confidence[0], len(labels), tau or 0.9, cap,
                              eligible_left=d.shape[2] - len(labels),
                              budget_left=budget - spent)  # fmt: skip
            if decision != Decision.ASK.value:
                break
            who.append(int(d.labeler[trial, example, len(labels)]))
            labels.append(int(d.label[trial, example, len(labels)]))
            spent += 1
            since += 1
        truth = int(d.truth[trial, example])
        n_labeled += 1
        errors += int(post.label[0] != truth)
        abs_error += abs(truth - float(post.p1[0]))
        if method is not Method.MV:
            run.task.append(np.full(len(labels), example))
            run.labeler.append(np.array(who, dtype=np.int64))
            run.label.append(np.array(labels, dtype=np.float64))
        example += 1
        if method is not Method.MV and since >= every and spent < budget:
            params = run.fit(example)
            since = 0
    return n_labeled, spent, errors, abs_error, run.fits


@pytest.mark.parametrize(
    "method,tau,k", [(Method.GTX, 0.97, None), (Method.SV, 0.9, None), (Method.WMV, None, 3),
                     (Method.MV, None, 5)],
    ids=["gtx", "sv", "wmv", "mv"],
)  # fmt: skip
@pytest.mark.parametrize("every", [7, 60])
def test_em_stream_equals_a_per_label_loop_that_refits_at_the_same_labels(
    method: Method, tau: float | None, k: int | None, every: int
) -> None:
    budget = 300
    d = _draws(sim.LESS_ACCURATE, budget)
    s = em_stream(method, d, cohort="less_accurate", budget=budget, tau=tau, k=k, every=every)
    for t in range(2):
        n, used, errors, abs_error, fits = _loop(method, d, t, tau=tau, k=k, kappa=5,
                                                 budget=budget, every=every,
                                                 model=ModelName.ONE_COIN)  # fmt: skip
        o = s.outcome
        assert (int(o.n_labeled[t]), int(o.labels_used[t]), int(o.errors[t])) == (n, used, errors)
        assert float(o.abs_error[t]) == pytest.approx(abs_error, rel=1e-12, abs=1e-9)
        assert int(s.fits[t]) == fits
        # a fit once `every` labels are in since the last: about budget / every of them
        assert fits == 1 if method is Method.MV else 0.7 * budget / every < fits <= budget / every


@pytest.mark.parametrize("cohort", sim.TWO_COIN_COHORTS, ids=lambda c: c.name)
def test_two_coin_em_stream_equals_the_per_label_loop(cohort: sim.Cohort) -> None:
    budget = 250
    d = _draws(cohort, budget)
    s = em_stream("gtx", d, cohort=cohort.name, budget=budget, tau=0.95, every=40,
                  model="two_coin")  # fmt: skip
    for t in range(2):
        n, used, errors, abs_error, fits = _loop(Method.GTX, d, t, tau=0.95, k=None, kappa=5,
                                                 budget=budget, every=40,
                                                 model=ModelName.TWO_COIN)  # fmt: skip
        o = s.outcome
        assert (int(o.n_labeled[t]), int(o.labels_used[t]), int(o.errors[t])) == (n, used, errors)
        assert float(o.abs_error[t]) == pytest.approx(abs_error, rel=1e-12, abs=1e-9)
        assert int(s.fits[t]) == fits > 1


def test_labels_never_asked_for_change_nothing() -> None:
    """Poison every label the rule did not buy (later slots, examples past the budget)."""
    budget = 400
    d = _draws(sim.ACCURATE, budget * 2)
    run = em_stream("gtx", d, cohort="accurate", budget=budget, tau=0.99, every=25)
    bought = np.arange(d.shape[2])[None, None, :] < run.asked[:, :, None]
    assert bought.sum() == 2 * budget and not bought.all()
    poisoned = dataclasses.replace(d, label=np.where(bought, d.label, 1 - d.label).astype(np.int8))
    again = em_stream("gtx", poisoned, cohort="accurate", budget=budget, tau=0.99, every=25)
    for f in ("n_labeled", "labels_used", "errors", "abs_error"):
        np.testing.assert_array_equal(getattr(again.outcome, f), getattr(run.outcome, f))
    np.testing.assert_array_equal(again.asked, run.asked)
    # and poisoning a label that was bought does change what EM learns
    first = np.zeros_like(bought)
    first[:, :50, 0] = True
    flipped = dataclasses.replace(d, label=np.where(first, 1 - d.label, d.label).astype(np.int8))
    other = em_stream("gtx", flipped, cohort="accurate", budget=budget, tau=0.99, every=25)
    assert not np.array_equal(other.asked, run.asked)


def test_without_a_refit_it_is_the_simulator_with_the_gold_only_em_parameters() -> None:
    budget = 500
    d = _draws(sim.ACCURATE, budget, trials=3)
    acc = np.stack(
        [_Trial(gold_items(d, t), ModelName.ONE_COIN, 10).fit(0)["accuracy"] for t in range(3)]
    )
    fixed = sim.simulate_threshold(sim.ACCURATE, d, acc, taus=(0.9, 0.99), budget=budget)
    learned = sim.simulate_threshold_em("accurate", d, taus=(0.9, 0.99), budget=budget,
                                        every=budget + 1)  # fmt: skip
    assert [(o.method, o.tau, o.k) for o in fixed] == [(o.method, o.tau, o.k) for o in learned]
    for a, b in zip(fixed, learned, strict=True):
        for f in ("n_labeled", "labels_used", "errors"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
        np.testing.assert_allclose(a.abs_error, b.abs_error, rtol=0, atol=1e-9)


@pytest.mark.parametrize("cohort", [sim.ACCURATE, sim.MISSES_POSITIVES], ids=lambda c: c.name)
def test_gold_items_carry_the_draws_counts(cohort: sim.Cohort) -> None:
    d = _draws(cohort, 10, trials=3)
    for t in range(3):
        g = gold_items(d, t)
        assert len(np.unique(g.task)) == len(g.task) == 10 * 6
        right = g.label == g.truth
        np.testing.assert_array_equal(np.bincount(g.labeler, right), d.assess_correct[t])
        tp = np.bincount(g.labeler, right & (g.truth == 1))
        pos = np.bincount(g.labeler, g.truth == 1)
        np.testing.assert_array_equal(np.c_[tp, pos], d.assess_two_coin[t][:, :2])


def test_em_stream_refuses_what_it_cannot_run() -> None:
    d = _draws(sim.ACCURATE, 50)
    with pytest.raises(ValueError, match="cadence"):
        em_stream("gtx", d, cohort="accurate", budget=50, tau=0.9, every=0)
    with pytest.raises(ValueError, match="tau"):
        em_stream("gtx", d, cohort="accurate", budget=50)
    no_gold = sim.draw(sim.ACCURATE, trials=1, examples=50, slots=5, seed=0)
    with pytest.raises(ValueError, match="assessment"):
        em_stream("gtx", no_gold, cohort="accurate", budget=50, tau=0.9)
    with pytest.raises(ValueError, match="em"):
        sim.Accuracy.EM.estimator  # noqa: B018
