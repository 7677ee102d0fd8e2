"""Equation (4) and the Beta estimate of labeler accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gtx_stream.core.accuracy import (
    assess,
    assess_two_coin,
    beta_accuracy,
    class_prior,
    clopper_pearson,
    count_correct,
    count_two_coin,
    estimate,
    estimate_accuracy,
    estimate_two_coin,
    mle_accuracy,
)
from gtx_stream.core.models import TwoCoin


def test_mle_is_share_correct() -> None:
    np.testing.assert_allclose(mle_accuracy([18, 20, 0], [20, 20, 0]), [0.9, 1.0, 0.5])


def test_beta_mean_shrinks_a_perfect_record() -> None:
    est = beta_accuracy([20], [20])
    assert est.accuracy[0] == pytest.approx(21 / 22)
    assert est.lower[0] < est.accuracy[0] < est.upper[0] < 1.0


def test_beta_interval_matches_scipy() -> None:
    est = beta_accuracy([7, 15], [10, 20], prior=(2.0, 1.0), level=0.9)
    for i, (c, n) in enumerate([(7, 10), (15, 20)]):
        dist = stats.beta(c + 2.0, n - c + 1.0)
        assert est.accuracy[i] == pytest.approx(dist.mean())
        assert est.lower[i] == pytest.approx(dist.ppf(0.05))
        assert est.upper[i] == pytest.approx(dist.ppf(0.95))


def test_beta_with_no_items_is_the_prior() -> None:
    est = beta_accuracy([0], [0])
    assert est.accuracy[0] == 0.5
    assert est.lower[0] == pytest.approx(0.025) and est.upper[0] == pytest.approx(0.975)


@pytest.mark.parametrize("correct,total", [([3], [2]), ([-1], [2])])
def test_impossible_counts_are_refused(correct: list[int], total: list[int]) -> None:
    with pytest.raises(ValueError):
        beta_accuracy(correct, total)


def test_estimate_accuracy_by_name() -> None:
    assert estimate_accuracy([9], [10], "mle")[0] == 0.9
    assert estimate_accuracy([9], [10], "beta")[0] == pytest.approx(10 / 12)
    with pytest.raises(ValueError, match="true"):
        estimate_accuracy([9], [10], "true")


def test_count_correct() -> None:
    got = count_correct(["a", "b", "a", "a"], [1, 0, 0, 1], [1, 1, 0, 0])
    assert got == {"a": (2, 3), "b": (0, 1)}


def test_clopper_pearson_known_values() -> None:
    # 0 of n and n of n: the one-sided bounds are (alpha/2)^(1/n)
    lower, upper = clopper_pearson([10, 0, 0], [10, 10, 0])
    assert lower[0] == pytest.approx(0.025 ** (1 / 10)) and upper[0] == 1.0
    assert lower[1] == 0.0 and upper[1] == pytest.approx(1 - 0.025 ** (1 / 10))
    assert (lower[2], upper[2]) == (0.0, 1.0)  # no item: nothing known


def test_clopper_pearson_matches_scipy_and_contains_the_mle() -> None:
    lower, upper = clopper_pearson([3, 17], [4, 20], level=0.9)
    for i, (c, n) in enumerate([(3, 4), (17, 20)]):
        ci = stats.binomtest(c, n).proportion_ci(confidence_level=0.9, method="exact")
        assert lower[i] == pytest.approx(ci.low) and upper[i] == pytest.approx(ci.high)
        assert lower[i] < c / n < upper[i]


def test_estimate_gives_each_estimator_its_interval() -> None:
    mle = estimate([3], [4], "mle")
    assert mle.accuracy[0] == 0.75
    assert (mle.lower[0], mle.upper[0]) == tuple(x[0] for x in clopper_pearson([3], [4]))
    beta = estimate([3], [4], "beta")
    assert beta.accuracy[0] == pytest.approx(4 / 6)
    assert beta.lower[0] == beta_accuracy([3], [4]).lower[0]
    with pytest.raises(ValueError, match="not an estimate"):
        estimate([3], [4], "true")


ANSWERS = {
    "1": {"w1": 1, "w2": 1},
    "2": {"w1": 0, "w2": 0},
    "3": {"w1": 0},
    "4": {"w1": 0},
    "9": {"w2": 1, "w1": 0},  # no truth: not counted
}
TRUTH = {"1": 1, "2": 0, "3": 1, "4": 0}


def test_assess_counts_answers_to_gold_tasks_only() -> None:
    got = assess(ANSWERS, TRUTH)
    assert list(got) == ["w1", "w2"]
    assert (got["w1"].correct, got["w1"].total) == (3, 4)
    assert (got["w2"].correct, got["w2"].total) == (2, 2)
    assert got["w1"].accuracy == pytest.approx(4 / 6)  # Beta(1, 1): (3 + 1) / (4 + 2)
    assert got["w2"].lower == pytest.approx(beta_accuracy([2], [2]).lower[0])
    mle = assess(ANSWERS, TRUTH, "mle")
    assert mle["w1"].accuracy == 0.75 and mle["w2"].upper == 1.0


def test_assess_reports_the_labelers_asked_for() -> None:
    got = assess(ANSWERS, TRUTH, "mle", labelers=["w2", "nobody"])
    assert list(got) == ["w2", "nobody"]
    assert got["nobody"].total == 0 and got["nobody"].accuracy == 0.5
    assert (got["nobody"].lower, got["nobody"].upper) == (0.0, 1.0)


def test_count_two_coin_by_class() -> None:
    got = count_two_coin(["a", "a", "a", "b", "b"], [1, 0, 0, 1, 1], [1, 1, 0, 0, 1])
    # a: truth-1 items answered 1, 0 -> tp 1 of 2; truth-0 item answered 0 -> tn 1 of 1
    assert got == {"a": (1, 2, 1, 1), "b": (1, 1, 0, 1)}


def test_two_coin_beta_by_hand() -> None:
    est = estimate_two_coin([(9, 10, 3, 5)], prior=(1.0, 1.0), level=0.9)
    assert est.sensitivity.accuracy[0] == pytest.approx(10 / 12)
    assert est.specificity.accuracy[0] == pytest.approx(4 / 7)
    dist = stats.beta(4, 3)  # specificity: 3 of 5 right under Beta(1, 1)
    assert est.specificity.lower[0] == pytest.approx(dist.ppf(0.05))
    assert est.specificity.upper[0] == pytest.approx(dist.ppf(0.95))


def test_two_coin_mle_and_its_clopper_pearson_intervals() -> None:
    est = estimate_two_coin([(9, 10, 3, 5), (0, 0, 4, 4)], "mle")
    np.testing.assert_allclose(est.sensitivity.accuracy, [0.9, 0.5])
    np.testing.assert_allclose(est.specificity.accuracy, [0.6, 1.0])
    lo, hi = clopper_pearson([3, 4], [5, 4])
    np.testing.assert_allclose(est.specificity.lower, lo)
    np.testing.assert_allclose(est.specificity.upper, hi)
    assert est.sensitivity.lower[1] == 0.0 and est.sensitivity.upper[1] == 1.0  # no truth-1 item


def test_class_prior_is_beta_smoothed() -> None:
    assert class_prior([1, 1, 1, 0]) == pytest.approx(4 / 6)
    assert class_prior([0, 0]) == pytest.approx(1 / 4)
    assert class_prior([], prior=(2.0, 2.0)) == 0.5
    with pytest.raises(ValueError):
        class_prior([1], prior=(0.0, 1.0))


def test_assess_two_coin_from_answers() -> None:
    answers = {"t1": {"a": 1, "b": 0}, "t2": {"a": 0, "b": 0}, "t3": {"a": 1}, "x": {"c": 1}}
    truth = {"t1": 1, "t2": 0, "t3": 0}
    got = assess_two_coin(answers, truth)
    assert sorted(got) == ["a", "b"]  # c answered no gold task
    a = got["a"]
    assert (a.sensitivity.correct, a.sensitivity.total) == (1, 1)
    assert (a.specificity.correct, a.specificity.total) == (1, 2)
    assert a.params() == TwoCoin(2 / 3, 2 / 4)
    only = assess_two_coin(answers, truth, labelers=["c"])
    assert only["c"].params() == TwoCoin(0.5, 0.5)
