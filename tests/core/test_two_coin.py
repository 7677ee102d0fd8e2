"""The two-coin model against hand-computed cases, the one-coin model, and the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gtx_stream.core.models import (
    LABELER_MODELS,
    MODELS,
    Method,
    ModelName,
    OneCoin,
    aggregate,
    model_of,
    one_coin,
    posterior_of,
    two_coin,
)
from gtx_stream.core.models.two_coin import UNKNOWN_TWO_COIN, TwoCoin, TwoCoinModel


def test_posterior_by_hand_on_three_labels() -> None:
    """Labels 1, 0, 1 from (s, t) = (0.9, 0.6), (0.7, 0.8), (0.6, 0.95), prior 0.3."""
    # P(labels | y=1) = 0.9 * (1 - 0.7) * 0.6;  P(labels | y=0) = (1 - 0.6) * 0.8 * (1 - 0.95)
    like1 = 0.9 * 0.3 * 0.6
    like0 = 0.4 * 0.8 * 0.05
    want = 0.3 * like1 / (0.3 * like1 + 0.7 * like0)
    post = two_coin.two_coin_posterior(
        [[1, 0, 1]], [[0.9, 0.7, 0.6]], [[0.6, 0.8, 0.95]], prior=0.3
    )
    assert post.p1[0] == pytest.approx(want, rel=1e-12)
    assert post.label[0] == 1 and post.confidence[0] == pytest.approx(want, rel=1e-12)
    lo = two_coin.log_odds([[1, 0, 1]], [[0.9, 0.7, 0.6]], [[0.6, 0.8, 0.95]], prior=0.3)
    assert lo[0] == pytest.approx(math.log(0.3 / 0.7) + math.log(like1 / like0), rel=1e-12)


def test_class_conditional_errors_move_the_posterior_one_coin_cannot() -> None:
    """A labeler who says 1 to almost everything: its 1 says little, its 0 says a lot."""
    yes_sayer = ([0.99], [0.30])
    said_one = two_coin.two_coin_posterior([[1]], *yes_sayer).p1[0]
    said_zero = two_coin.two_coin_posterior([[0]], *yes_sayer).p1[0]
    assert said_one == pytest.approx(0.99 / (0.99 + 0.70))
    assert said_zero == pytest.approx(0.01 / (0.01 + 0.30))


@pytest.mark.parametrize("prior", [0.5, 0.2, 0.85])
def test_equal_coins_are_the_one_coin_posterior_bit_for_bit(prior: float) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, (200, 9))
    acc = rng.uniform(0.0, 1.0, (200, 9))
    acc[:5, :3] = [0.0, 1.0, 0.5]  # the clipped ends and a no-weight labeler
    mask = rng.random((200, 9)) < 0.7
    got = two_coin.two_coin_posterior(labels, acc, acc, mask, prior)
    want = one_coin.gtx_posterior(labels, acc, mask, prior)
    for name in ("p1", "label", "confidence"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))


def test_padding_does_not_change_a_row_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, (1, 6))
    s, t = rng.uniform(0.5, 0.99, (1, 6)), rng.uniform(0.5, 0.99, (1, 6))
    alone = two_coin.log_odds(labels, s, t)
    pad = np.zeros((1, 40))
    padded = two_coin.log_odds(
        np.hstack([labels, pad]),
        np.hstack([s, pad + 0.5]),
        np.hstack([t, pad + 0.5]),
        np.hstack([np.ones((1, 6), bool), pad.astype(bool)]),
    )
    assert padded[0] == alone[0]


def test_extreme_coins_stay_finite() -> None:
    lo = two_coin.log_odds([[1, 0]], [[1.0, 0.0]], [[0.0, 1.0]])
    assert np.isfinite(lo).all()


def test_a_labeler_with_s_plus_t_one_carries_no_weight() -> None:
    with_it = two_coin.log_odds([[1, 1]], [[0.8, 0.3]], [[0.9, 0.7]])
    without = two_coin.log_odds([[1]], [[0.8]], [[0.9]])
    assert with_it[0] == pytest.approx(without[0], abs=1e-15)
    assert two_coin.log_odds([[0]], [[0.5]], [[0.5]])[0] == 0.0


def test_bad_prior_is_refused() -> None:
    with pytest.raises(ValueError, match="prior"):
        two_coin.log_odds([[1]], [[0.9]], [[0.9]], prior=0.0)


def test_two_coin_parameters() -> None:
    p = TwoCoin(0.9, 0.7)
    assert p.value("sensitivity") == 0.9 and p.value("specificity") == 0.7
    assert p.weight() == pytest.approx(0.8)
    with pytest.raises(KeyError, match="accuracy"):
        p.value("accuracy")
    assert TwoCoin.symmetric(0.8) == TwoCoin(0.8, 0.8)
    assert TwoCoin(0.5, 0.5) == UNKNOWN_TWO_COIN


def test_registered_by_its_model_name_without_a_new_method() -> None:
    assert set(MODELS) == set(Method)  # tables and the simulator's layout are unchanged
    assert isinstance(model_of("two_coin"), TwoCoinModel)
    assert model_of(ModelName.ONE_COIN) is MODELS[Method.GTX]
    assert set(LABELER_MODELS) == set(ModelName)
    assert TwoCoinModel.method is Method.GTX
    with pytest.raises(ValueError):
        model_of("three_coin")


def test_posterior_of_by_model_name_equals_the_batch_posterior() -> None:
    rng = np.random.default_rng(11)
    rows = [
        [
            (
                int(rng.integers(0, 2)),
                TwoCoin(float(rng.uniform(0.5, 1)), float(rng.uniform(0.5, 1))),
            )
            for _ in range(n)
        ]
        for n in (1, 5, 0, 3)
    ]
    batch = posterior_of("two_coin", rows, prior=0.4)
    for i, row in enumerate(rows):
        alone = two_coin.two_coin_posterior(
            [[label for label, _ in row]],
            [[p.sensitivity for _, p in row]],
            [[p.specificity for _, p in row]],
            prior=0.4,
        )
        assert batch.p1[i] == alone.p1[0]
        assert batch.label[i] == alone.label[0] and batch.confidence[i] == alone.confidence[0]


def test_one_coin_rows_equal_their_symmetric_two_coin_rows() -> None:
    rows = [[(1, OneCoin(0.9)), (0, OneCoin(0.7))], [(0, OneCoin(0.65))]]
    sym = [[(label, TwoCoin.symmetric(p.accuracy)) for label, p in row] for row in rows]
    np.testing.assert_array_equal(
        posterior_of("gtx", rows, 0.3).p1, posterior_of("two_coin", sym, 0.3).p1
    )


def test_aggregate_refuses_a_model_that_reads_two_parameters() -> None:
    with pytest.raises(ValueError, match="sensitivity"):
        aggregate("two_coin", [[1]], [[0.9]])
    assert aggregate("one_coin", [[1]], [[0.9]]).p1[0] == pytest.approx(0.9)
