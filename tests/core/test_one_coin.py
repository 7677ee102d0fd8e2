"""Equation (3) and the baselines of section 3.1 against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gtx_stream.core import models as model
from gtx_stream.core.models import TIE_LABEL, Method


def _p(odds: float) -> float:
    return odds / (1 + odds)


@pytest.mark.parametrize(
    "labels,acc,expected_p1",
    [
        ([1], [0.9], 0.9),
        ([0], [0.9], 0.1),
        ([1, 1], [0.9, 0.8], _p(9 * 4)),
        ([1, 0], [0.9, 0.8], _p(9 / 4)),
        ([1, 1, 0], [0.9, 0.9, 0.7], _p(9 * 9 / (0.7 / 0.3))),
        ([0, 0, 1, 1], [0.6, 0.7, 0.8, 0.9], _p((0.4 / 0.6) * (0.3 / 0.7) * 4 * 9)),
    ],
    ids=["one", "one-against", "two-agree", "two-disagree", "three", "four-mixed"],
)
def test_posterior_by_hand(labels: list[int], acc: list[float], expected_p1: float) -> None:
    post = model.gtx_posterior([labels], [acc])
    assert post.p1[0] == pytest.approx(expected_p1, rel=1e-12)
    assert post.confidence[0] == pytest.approx(max(expected_p1, 1 - expected_p1), rel=1e-12)
    assert post.label[0] == int(expected_p1 > 0.5)


def test_posterior_matches_equation_3_product_form() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (50, 7))
    acc = rng.uniform(0.55, 0.95, (50, 7))
    prior = 0.3
    like1 = np.prod(np.where(labels == 1, acc, 1 - acc), axis=1) * prior
    like0 = np.prod(np.where(labels == 0, acc, 1 - acc), axis=1) * (1 - prior)
    post = model.gtx_posterior(labels, acc, prior=prior)
    np.testing.assert_allclose(post.p1, like1 / (like1 + like0), rtol=1e-10)


def test_accuracy_half_contributes_nothing() -> None:
    post = model.gtx_posterior([[1, 0, 1]], [[0.5, 0.5, 0.8]])
    assert post.p1[0] == pytest.approx(0.8, rel=1e-12)
    only_coin = model.gtx_posterior([[1, 1]], [[0.5, 0.5]])
    assert only_coin.p1[0] == 0.5 and only_coin.confidence[0] == 0.5
    assert only_coin.label[0] == TIE_LABEL


def test_no_labels_gives_the_prior() -> None:
    post = model.gtx_posterior([[1, 1]], [[0.9, 0.9]], mask=[[False, False]], prior=0.2)
    assert post.p1[0] == pytest.approx(0.2)
    assert post.label[0] == 0 and post.confidence[0] == pytest.approx(0.8)


def test_accuracies_near_one_and_zero_stay_finite() -> None:
    # near 1: one label is almost certain, but the log-odds stay finite
    post = model.gtx_posterior([[1]], [[1 - 1e-15]])
    assert np.isfinite(model.log_odds([[1]], [[1 - 1e-15]])).all()
    assert post.p1[0] > 1 - 1e-11 and post.label[0] == 1
    # exactly 1 and exactly 0 are clipped: two "perfect" labelers who disagree cancel out
    post = model.gtx_posterior([[1, 0]], [[1.0, 1.0]])
    assert post.p1[0] == 0.5
    # near 0: an adversarial labeler's label is evidence for the other class
    post = model.gtx_posterior([[1]], [[1e-9]])
    assert post.label[0] == 0 and post.confidence[0] > 1 - 1e-8


def test_fifty_and_more_labels_neither_overflow_nor_underflow() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        lo = model.log_odds([[1] * 60], [[0.99] * 60])
        assert lo[0] == pytest.approx(60 * math.log(99), rel=1e-12)
        post = model.gtx_posterior([[1] * 60], [[0.99] * 60])
        assert post.p1[0] == 1.0 and post.confidence[0] == 1.0
        # 31 for, 30 against at the same accuracy: exactly one net label
        mixed = model.gtx_posterior([[1] * 31 + [0] * 30], [[0.99] * 61])
        assert mixed.p1[0] == pytest.approx(0.99, rel=1e-9)
        # the product form of equation (3) underflows to 0/0 here; log-odds do not
        many = model.gtx_posterior([[0] * 200], [[0.99] * 200])
        assert many.label[0] == 0 and many.confidence[0] == 1.0
        assert model.log_odds([[0] * 200], [[0.99] * 200])[0] == pytest.approx(-200 * math.log(99))


def test_same_labels_same_posterior_whatever_the_padding() -> None:
    labels, acc = [1, 0, 1, 1, 0], [0.91, 0.77, 0.83, 0.66, 0.95]
    narrow = model.gtx_posterior([labels], [acc])
    wide = model.gtx_posterior(
        [labels + [1] * 20], [acc + [0.9] * 20], mask=[[True] * 5 + [False] * 20]
    )
    assert narrow.p1[0] == wide.p1[0]  # bit for bit


# -- baselines: the paper's confidence definitions ---------------------------------------


def test_majority_vote_confidence_is_share_of_votes() -> None:
    post = model.majority_vote([[1, 1, 0], [0, 0, 0], [1, 0, 0, 0]][:2])
    np.testing.assert_allclose(post.p1, [2 / 3, 0.0])
    np.testing.assert_allclose(post.confidence, [2 / 3, 1.0])
    assert list(post.label) == [1, 0]
    four = model.majority_vote([[1, 0, 0, 0]])
    assert four.confidence[0] == 0.75 and four.label[0] == 0


def test_weighted_majority_vote_confidence_is_share_of_weight() -> None:
    post = model.weighted_majority_vote([[1, 0, 0]], [[0.9, 0.6, 0.7]])
    assert post.p1[0] == pytest.approx(0.9 / 2.2)
    assert post.label[0] == 0 and post.confidence[0] == pytest.approx(1.3 / 2.2)


def test_soft_vote_spreads_each_vote() -> None:
    # labeler 1 says 1 at 0.9: 0.9 to "1", 0.1 to "0"; labeler 2 says 0 at 0.6: 0.4 to "1"
    post = model.soft_vote([[1, 0]], [[0.9, 0.6]])
    assert post.p1[0] == pytest.approx((0.9 + 0.4) / 2)
    assert post.confidence[0] == pytest.approx(0.65) and post.label[0] == 1


@pytest.mark.parametrize("method", list(Method))
def test_ties_have_confidence_half_and_the_documented_label(method: Method) -> None:
    post = model.aggregate(method, [[1, 0]], [[0.8, 0.8]])
    assert post.confidence[0] == 0.5 and post.p1[0] == 0.5
    assert post.label[0] == TIE_LABEL


@pytest.mark.parametrize("method", [Method.MV, Method.WMV])
def test_mv_and_wmv_are_certain_after_one_label(method: Method) -> None:
    assert model.aggregate(method, [[0]], [[0.6]]).confidence[0] == 1.0


def test_uncertainty_is_equation_5() -> None:
    post = model.gtx_posterior([[1], [0]], [[0.9], [0.7]])
    np.testing.assert_allclose(post.uncertainty, [0.1, 0.3])


def test_bad_prior_is_refused() -> None:
    with pytest.raises(ValueError, match="prior"):
        model.log_odds([[1]], [[0.9]], prior=1.0)
