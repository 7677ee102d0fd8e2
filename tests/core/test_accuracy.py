"""Equation (4) and the Beta estimate of labeler accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gtx_stream.core.accuracy import beta_accuracy, count_correct, estimate_accuracy, mle_accuracy


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
