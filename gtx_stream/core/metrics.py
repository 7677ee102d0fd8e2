r"""How good a binary classifier is: balanced error, calibration (ECE), the confusion matrix.

Section 4 of the paper reports a fine-tuned model's *balanced error rate* and *expected
calibration error* on the held-out evaluation set. Both are pure numpy here, so that
``gtx-stream train``, the fine-tuning experiment and the tests compute them once.

- **Balanced error** is one minus the mean per-class recall,

  .. math::
      \mathrm{BER} = 1 - \frac{1}{|C|} \sum_{c \in C} \frac{|\{i : y_i = c, \hat y_i = c\}|}
      {|\{i : y_i = c\}|},

  over the classes C present in the truth: a model that always says the majority class
  scores 0.5, however skewed the classes are (plain error would reward it).
- **ECE** (Guo et al., 2017, "On calibration of modern neural networks") bins the
  predictions by their confidence, :math:`\max(p_1, 1 - p_1)`, in ``n_bins`` equal-width
  bins of [0, 1] and averages the gap between accuracy and mean confidence per bin, weighted
  by the bin's share of the predictions:

  .. math::
      \mathrm{ECE} = \sum_{b} \frac{|B_b|}{n} \, \bigl|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)\bigr|.

  Bin b holds confidences in :math:`((b-1)/M, b/M]` (the first bin also holds 0), as in Guo
  et al.; with two classes the confidence is at least 0.5, so the lower half of the bins is
  always empty. The predicted class is 1 when :math:`p_1 \ge 0.5`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models import FloatArray

DEFAULT_BINS = 10


def _labels(y: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{name} must hold 0 and 1 only")
    return arr.astype(np.int64)


def _probabilities(p1: ArrayLike, n: int) -> FloatArray:
    arr = np.asarray(p1, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"p1 must have shape ({n},), got {arr.shape}")
    if not ((arr >= 0) & (arr <= 1)).all():
        raise ValueError("p1 must lie in [0, 1]")
    return arr


def predicted(p1: ArrayLike) -> np.ndarray:
    """The predicted class of each probability: 1 when p1 >= 0.5."""
    return (np.asarray(p1, dtype=np.float64) >= 0.5).astype(np.int64)


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike) -> np.ndarray:
    """2x2 counts: row = true class, column = predicted class (``[[tn, fp], [fn, tp]]``)."""
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} != {p.size}")
    out = np.zeros((2, 2), dtype=np.int64)
    np.add.at(out, (t, p), 1)
    return out


def balanced_error(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """One minus the mean recall over the classes present in ``y_true`` (NaN when empty)."""
    cm = confusion_matrix(y_true, y_pred)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return float("nan")
    recall = np.diag(cm)[present] / support[present]
    return float(1.0 - recall.mean())


@dataclass(frozen=True)
class Reliability:
    """Per-bin counts, mean confidence and accuracy: the reliability diagram and the ECE."""

    edges: FloatArray  # n_bins + 1 equal-width edges of [0, 1]
    counts: np.ndarray  # predictions per bin
    confidence: FloatArray  # mean confidence per bin (NaN for an empty bin)
    accuracy: FloatArray  # share of correct predictions per bin (NaN for an empty bin)

    @property
    def ece(self) -> float:
        n = int(self.counts.sum())
        if n == 0:
            return float("nan")
        full = self.counts > 0
        gaps = np.abs(self.accuracy[full] - self.confidence[full])
        return float((self.counts[full] / n * gaps).sum())


def reliability(y_true: ArrayLike, p1: ArrayLike, n_bins: int = DEFAULT_BINS) -> Reliability:
    """Bin the predictions by confidence max(p1, 1 - p1) in ``n_bins`` equal-width bins."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    t = _labels(y_true, "y_true")
    p = _probabilities(p1, t.size)
    conf = np.maximum(p, 1.0 - p)
    correct = (predicted(p) == t).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bin b holds (edges[b], edges[b+1]]; a confidence of exactly 0 goes to the first bin
    index = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=conf, minlength=n_bins) / counts
        accuracy = np.bincount(index, weights=correct, minlength=n_bins) / counts
    return Reliability(edges=edges, counts=counts, confidence=confidence, accuracy=accuracy)


def expected_calibration_error(
    y_true: ArrayLike, p1: ArrayLike, n_bins: int = DEFAULT_BINS
) -> float:
    """ECE with equal-width confidence bins (Guo et al., 2017); NaN when there is nothing."""
    return reliability(y_true, p1, n_bins).ece
