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
