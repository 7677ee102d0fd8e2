"""Cohorts and draws: reproducible trials, labelers without replacement, the assessment set."""

from __future__ import annotations

import numpy as np
import pytest

from gtx_stream.offline.simulate import cohorts
from gtx_stream.offline.simulate.cohorts import ACCURATE, LESS_ACCURATE, draw


def test_draws_are_reproducible_and_trial_t_does_not_depend_on_the_trial_count() -> None:
    a = draw(ACCURATE, trials=3, examples=50, slots=5, seed=4, assess_size=7)
    b = draw(ACCURATE, trials=5, examples=50, slots=5, seed=4, assess_size=7)
    for name in ("accuracy", "assess_correct", "truth", "labeler", "label"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name)[:3], err_msg=name)
    c = draw(ACCURATE, trials=3, examples=50, slots=5, seed=5, assess_size=7)
    assert not np.array_equal(a.label, c.label)
    other = draw(LESS_ACCURATE, trials=3, examples=50, slots=5, seed=4, assess_size=7)
    assert not np.array_equal(a.truth, other.truth)  # cohorts draw independent trials


def test_labelers_are_drawn_without_replacement_and_answer_with_their_accuracy() -> None:
    d = draw(LESS_ACCURATE, trials=4, examples=4000, slots=10, seed=1)
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
    fast = cohorts._without_replacement(np.random.default_rng(9), labelers, (500, labelers))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cohorts, "_TABLE_LABELERS", 0)
        slow = cohorts._without_replacement(np.random.default_rng(9), labelers, (500, labelers))
    np.testing.assert_array_equal(fast, slow)


def test_accuracies_true_mle_beta() -> None:
    d = draw(ACCURATE, trials=2, examples=10, slots=3, seed=0, assess_size=4)
    np.testing.assert_array_equal(d.accuracies("true"), d.accuracy)
    np.testing.assert_allclose(d.accuracies("mle"), d.assess_correct / 4)
    np.testing.assert_allclose(d.accuracies("beta"), (d.assess_correct + 1) / 6)
    no_gold = draw(ACCURATE, trials=2, examples=10, slots=3, seed=0)
    with pytest.raises(ValueError, match="assessment"):
        no_gold.accuracies("beta")


# --- two coins per labeler -----------------------------------------------------------------


def test_the_paper_cohorts_draw_what_they_drew_before_two_coin_cohorts() -> None:
    """Pinned from the draws before the two-coin fields: the per-class gold split comes last."""
    d = draw(ACCURATE, trials=2, examples=100, slots=5, seed=0, assess_size=10)
    assert (int(d.label.sum()), int(d.labeler.astype(int).sum()), int(d.truth.sum())) == (
        463,
        4496,
        94,
    )
    assert int(d.assess_correct.sum()) == 173
    assert float(d.accuracy.sum()) == 17.879615709620463
    u = draw(LESS_ACCURATE, trials=2, examples=100, slots=10, seed=1, assess_size=10,
             tie_steps=5, experiment=cohorts.Experiment.UNCERTAINTY)  # fmt: skip
    assert (int(u.label.sum()), int(u.truth.sum()), int(u.assess_correct.sum())) == (954, 90, 149)
    assert float(u.tie.sum()) == 16.250392664008814


@pytest.mark.parametrize("cohort", [ACCURATE, LESS_ACCURATE], ids=lambda c: c.name)
def test_one_coin_cohorts_have_equal_coins_and_split_the_same_gold_items(
    cohort: cohorts.Cohort,
) -> None:
    d = draw(cohort, trials=400, examples=2, slots=2, seed=3, assess_size=40)
    np.testing.assert_array_equal(d.sensitivity, d.accuracy)
    np.testing.assert_array_equal(d.specificity, d.accuracy)
    tp, pos, tn, neg = np.moveaxis(d.assess_two_coin, -1, 0)
    np.testing.assert_array_equal(tp + tn, d.assess_correct)
    np.testing.assert_array_equal(pos + neg, 40)
    assert ((tp <= pos) & (tn <= neg) & (tp >= 0) & (tn >= 0)).all()
    # 160,000 gold items: half positive, and right as often on either class (4+ sigma)
    assert abs(pos.mean() / 40 - 0.5) < 0.005
    assert abs(tp.sum() / pos.sum() - tn.sum() / neg.sum()) < 0.01
    np.testing.assert_array_equal(d.coins("true").sensitivity, d.accuracy)


@pytest.mark.parametrize("cohort", cohorts.TWO_COIN_COHORTS, ids=lambda c: c.name)
def test_class_conditional_labelers_answer_with_the_coin_of_the_true_class(
    cohort: cohorts.Cohort,
) -> None:
    d = draw(cohort, trials=20, examples=4000, slots=10, seed=2, assess_size=30)
    assert cohort.specificity is not None
    lo, hi = cohort.specificity
    assert ((d.sensitivity >= cohort.low) & (d.sensitivity <= cohort.high)).all()
    assert ((d.specificity >= lo) & (d.specificity <= hi)).all()
    np.testing.assert_allclose(d.accuracy, (d.sensitivity + d.specificity) / 2)
    rows = np.arange(20)[:, None, None]
    s, t = d.sensitivity[rows, d.labeler], d.specificity[rows, d.labeler]
    y = np.broadcast_to(d.truth[:, :, None], d.label.shape)
    # 400,000 answers per class: P(1 | y=1) is the mean s of who was asked, P(0 | y=0) of t
    assert abs(d.label[y == 1].mean() - s[y == 1].mean()) < 0.005
    assert abs((1 - d.label[y == 0]).mean() - t[y == 0].mean()) < 0.005
    tp, pos, tn, neg = np.moveaxis(d.assess_two_coin, -1, 0)
    np.testing.assert_array_equal(tp + tn, d.assess_correct)
    assert abs(tp.sum() / pos.sum() - d.sensitivity.mean()) < 0.03
    assert abs(tn.sum() / neg.sum() - d.specificity.mean()) < 0.03
    again = draw(cohort, trials=3, examples=4000, slots=10, seed=2, assess_size=30)
    np.testing.assert_array_equal(again.assess_two_coin, d.assess_two_coin[:3])
    np.testing.assert_array_equal(again.label, d.label[:3])


def test_coins_true_mle_beta_are_equation_4_per_class() -> None:
    d = draw(cohorts.MISSES_POSITIVES, trials=2, examples=10, slots=3, seed=0, assess_size=6)
    tp, pos, tn, neg = np.moveaxis(d.assess_two_coin.astype(float), -1, 0)
    beta = d.coins("beta")
    np.testing.assert_allclose(beta.sensitivity, (tp + 1) / (pos + 2))
    np.testing.assert_allclose(beta.specificity, (tn + 1) / (neg + 2))
    mle = d.coins("mle")
    np.testing.assert_allclose(mle.sensitivity, np.where(pos > 0, tp / np.maximum(pos, 1), 0.5))
    true = d.coins("true")
    np.testing.assert_array_equal(true.specificity, d.specificity)
    assert true[:, :2].reshape(-1).shape == (4,)
    with pytest.raises(ValueError, match="assessment"):
        draw(cohorts.MISSES_POSITIVES, trials=1, examples=5, slots=2, seed=0).coins("beta")
