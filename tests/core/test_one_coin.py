"""GTX, equation (3), against hand-computed cases; one-coin labeler parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gtx_stream.core.models import TIE_LABEL, one_coin
from gtx_stream.core.models.one_coin import UNKNOWN_LABELER, GTXModel, OneCoin


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
    post = one_coin.gtx_posterior([labels], [acc])
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
    post = one_coin.gtx_posterior(labels, acc, prior=prior)
    np.testing.assert_allclose(post.p1, like1 / (like1 + like0), rtol=1e-10)


def test_accuracy_half_contributes_nothing() -> None:
    post = one_coin.gtx_posterior([[1, 0, 1]], [[0.5, 0.5, 0.8]])
    assert post.p1[0] == pytest.approx(0.8, rel=1e-12)
    only_coin = one_coin.gtx_posterior([[1, 1]], [[0.5, 0.5]])
    assert only_coin.p1[0] == 0.5 and only_coin.confidence[0] == 0.5
    assert only_coin.label[0] == TIE_LABEL


def test_no_labels_gives_the_prior() -> None:
    post = one_coin.gtx_posterior([[1, 1]], [[0.9, 0.9]], mask=[[False, False]], prior=0.2)
    assert post.p1[0] == pytest.approx(0.2)
    assert post.label[0] == 0 and post.confidence[0] == pytest.approx(0.8)


def test_accuracies_near_one_and_zero_stay_finite() -> None:
    # near 1: one label is almost certain, but the log-odds stay finite
    post = one_coin.gtx_posterior([[1]], [[1 - 1e-15]])
    assert np.isfinite(one_coin.log_odds([[1]], [[1 - 1e-15]])).all()
    assert post.p1[0] > 1 - 1e-11 and post.label[0] == 1
    # exactly 1 and exactly 0 are clipped: two "perfect" labelers who disagree cancel out
    post = one_coin.gtx_posterior([[1, 0]], [[1.0, 1.0]])
    assert post.p1[0] == 0.5
    # near 0: an adversarial labeler's label is evidence for the other class
    post = one_coin.gtx_posterior([[1]], [[1e-9]])
    assert post.label[0] == 0 and post.confidence[0] > 1 - 1e-8


def test_fifty_and_more_labels_neither_overflow_nor_underflow() -> None:
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        lo = one_coin.log_odds([[1] * 60], [[0.99] * 60])
        assert lo[0] == pytest.approx(60 * math.log(99), rel=1e-12)
        post = one_coin.gtx_posterior([[1] * 60], [[0.99] * 60])
        assert post.p1[0] == 1.0 and post.confidence[0] == 1.0
        # 31 for, 30 against at the same accuracy: exactly one net label
        mixed = one_coin.gtx_posterior([[1] * 31 + [0] * 30], [[0.99] * 61])
        assert mixed.p1[0] == pytest.approx(0.99, rel=1e-9)
        # the product form of equation (3) underflows to 0/0 here; log-odds do not
        many = one_coin.gtx_posterior([[0] * 200], [[0.99] * 200])
        assert many.label[0] == 0 and many.confidence[0] == 1.0
        assert one_coin.log_odds([[0] * 200], [[0.99] * 200])[0] == pytest.approx(
            -200 * math.log(99)
        )


def test_same_labels_same_posterior_whatever_the_padding() -> None:
    labels, acc = [1, 0, 1, 1, 0], [0.91, 0.77, 0.83, 0.66, 0.95]
    narrow = one_coin.gtx_posterior([labels], [acc])
    wide = one_coin.gtx_posterior(
        [labels + [1] * 20], [acc + [0.9] * 20], mask=[[True] * 5 + [False] * 20]
    )
    assert narrow.p1[0] == wide.p1[0]  # bit for bit


def test_bad_prior_is_refused() -> None:
    with pytest.raises(ValueError, match="prior"):
        one_coin.log_odds([[1]], [[0.9]], prior=1.0)


def test_one_coin_parameters_are_the_accuracy() -> None:
    params = OneCoin(0.8)
    assert params.weight() == 0.8 and params.value("accuracy") == 0.8
    with pytest.raises(KeyError, match="sensitivity"):
        params.value("sensitivity")
    assert UNKNOWN_LABELER.value("accuracy") == 0.5  # contributes nothing to equation (3)


def test_the_model_object_is_gtx_posterior() -> None:
    labels, acc = [[1, 0, 1]], [[0.9, 0.7, 0.6]]
    got = GTXModel().posterior(labels, {"accuracy": acc}, prior=0.4)
    want = one_coin.gtx_posterior(labels, acc, prior=0.4)
    for name in ("p1", "label", "confidence"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert GTXModel.reads == ("accuracy",)
