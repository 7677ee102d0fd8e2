"""Balanced error, ECE binning and the confusion matrix against cases worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gtx_stream.core.metrics import (
    balanced_error,
    confusion_matrix,
    expected_calibration_error,
    predicted,
    reliability,
)


def test_confusion_matrix_rows_are_truth_columns_are_predictions() -> None:
    # truth 0 0 0 1 1, predicted 0 1 0 1 0: tn=2 fp=1 fn=1 tp=1
    cm = confusion_matrix([0, 0, 0, 1, 1], [0, 1, 0, 1, 0])
    assert cm.tolist() == [[2, 1], [1, 1]]


@pytest.mark.parametrize(
    ("y_true", "y_pred", "expected"),
    [
        pytest.param([0, 0, 0, 1, 1], [0, 1, 0, 1, 0], 1 - (2 / 3 + 1 / 2) / 2, id="mixed"),
        # nine 0s and one 1, always "0": plain error 0.1, balanced error 0.5
        pytest.param([0] * 9 + [1], [0] * 10, 0.5, id="majority-class-scores-half"),
        pytest.param([1, 0, 1], [1, 0, 1], 0.0, id="perfect"),
        pytest.param([1, 0], [0, 1], 1.0, id="all-wrong"),
        # only class 1 in the truth: the recall of class 1 alone, 2 of 3
        pytest.param([1, 1, 1], [1, 0, 1], 1 / 3, id="one-class-present"),
    ],
)
def test_balanced_error_is_one_minus_mean_recall(
    y_true: list[int], y_pred: list[int], expected: float
) -> None:
    assert balanced_error(y_true, y_pred) == pytest.approx(expected)


def test_balanced_error_of_nothing_is_nan() -> None:
    assert math.isnan(balanced_error([], []))


def test_predicted_class_is_one_from_half_on() -> None:
    assert predicted([0.0, 0.49, 0.5, 0.9]).tolist() == [0, 0, 1, 1]


def test_ece_of_a_hand_computed_case() -> None:
    # p1:    0.9  0.8  0.3  0.45  0.55  0.95
    # conf:  0.9  0.8  0.7  0.55  0.55  0.95   pred: 1 1 0 0 1 1
    # truth: 1    0    0    1     1     1      correct: 1 0 1 0 1 1
    # 10 bins: (0.5,0.6]: conf .55,.55 acc 1/2 -> gap .05, weight 2/6
    #          (0.6,0.7]: conf .7 acc 1 -> gap .3, weight 1/6
    #          (0.7,0.8]: conf .8 acc 0 -> gap .8, weight 1/6
    #          (0.8,0.9]: conf .9 acc 1 -> gap .1, weight 1/6
    #          (0.9,1.0]: conf .95 acc 1 -> gap .05, weight 1/6
    p1 = [0.9, 0.8, 0.3, 0.45, 0.55, 0.95]
    truth = [1, 0, 0, 1, 1, 1]
    expected = (2 * 0.05 + 0.3 + 0.8 + 0.1 + 0.05) / 6
    assert expected_calibration_error(truth, p1) == pytest.approx(expected)
    rel = reliability(truth, p1)
    assert rel.counts.tolist() == [0, 0, 0, 0, 0, 2, 1, 1, 1, 1]
    assert rel.accuracy[5] == pytest.approx(0.5)
    assert rel.confidence[5] == pytest.approx(0.55)
    assert np.isnan(rel.accuracy[:5]).all()


def test_a_bin_holds_its_upper_edge_not_its_lower_one() -> None:
    # confidences 0.5 and 0.6 fall into (0.4, 0.5] and (0.5, 0.6]; 1.0 into the last bin
    rel = reliability([1, 1, 1], [0.5, 0.6, 1.0])
    assert rel.counts.tolist() == [0, 0, 0, 0, 1, 1, 0, 0, 0, 1]


def test_ece_with_two_bins() -> None:
    # two bins, [0, 0.5] and (0.5, 1]: conf .5 (pred 1, truth 0, wrong) and .75, .75 (right)
    # ECE = 1/3 * |0 - .5| + 2/3 * |1 - .75| = 1/6 + 1/6
    assert expected_calibration_error([0, 1, 0], [0.5, 0.75, 0.25], n_bins=2) == pytest.approx(
        1 / 3
    )


def test_a_calibrated_model_has_an_ece_near_zero() -> None:
    rng = np.random.default_rng(0)
    p1 = rng.uniform(size=200_000)
    truth = (rng.uniform(size=p1.size) < p1).astype(int)
    assert expected_calibration_error(truth, p1) < 0.005


def test_ece_of_nothing_is_nan() -> None:
    assert math.isnan(expected_calibration_error([], []))


@pytest.mark.parametrize(
    ("y_true", "p1", "message"),
    [
        pytest.param([0, 2], [0.1, 0.2], "0 and 1 only", id="bad-label"),
        pytest.param([0, 1], [0.1], "shape", id="bad-length"),
        pytest.param([0, 1], [0.1, 1.2], r"\[0, 1\]", id="bad-probability"),
    ],
)
def test_bad_input_is_a_one_line_error(y_true: list[int], p1: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expected_calibration_error(y_true, p1)
