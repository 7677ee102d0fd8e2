r"""GTX: the one-coin naive-Bayes model of equation (3), and one-coin labeler parameters.

Paper: Kumar, Sandler, Varshavskaya, "Fine-tuning Vision Classifiers On A Budget"
(``shared/spec/gtx-paper.md``), sections 2.1 and 2.3. Each labeler j is a coin that gives the
true label with probability alpha_j whatever the class (one coin, not one per class), and
labels are independent given the true label.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models.base import (
    ACCURACY_EPS,
    TIE_LABEL,
    FloatArray,
    Method,
    Posterior,
    as_batch,
    logit,
    sequential_sum,
    sigmoid,
)


@dataclass(frozen=True)
class OneCoin:
    """One-coin labeler parameters: the probability ``accuracy`` that a label is right."""

    accuracy: float

    def weight(self) -> float:
        """What equation (3) and the baselines weigh this labeler's label with."""
        return self.accuracy

    def value(self, name: str) -> float:
        if name != "accuracy":
            raise KeyError(f"one-coin parameters have no {name!r}")
        return self.accuracy


UNKNOWN_LABELER = OneCoin(0.5)
"""Parameters of a labeler nothing is known about: its labels carry no weight in GTX."""


def log_odds(
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> FloatArray:
    r"""Posterior log-odds of label 1 under the one-coin naive-Bayes model, equation (3).

    .. math::
        \log\frac{P(Y_i=1\mid\mathcal L(i))}{P(Y_i=0\mid\mathcal L(i))}
        = \log\frac{\pi_1}{\pi_0}
          + \sum_{j\in\mathcal J(i)} (2y_i^j - 1)\log\frac{\alpha_j}{1-\alpha_j}

    Equation (3) multiplies one factor per label, and such products shrink towards zero
    exponentially fast; the ratio of the two classes' products is a sum of logs, which neither
    overflows nor underflows with many labels or with accuracies close to 0 or 1.
    A labeler with accuracy 0.5 contributes exactly nothing. The sum runs label by label in
    arrival order (:func:`~gtx_stream.core.models.base.sequential_sum`), so a row gives the
    same log-odds bit for bit however its batch is padded.
    """
    lab, acc, m = as_batch(labels, accuracies, mask)
    if not 0.0 < prior < 1.0:
        raise ValueError(f"class prior must be in (0, 1), got {prior}")
    weight = logit(np.clip(acc, ACCURACY_EPS, 1.0 - ACCURACY_EPS))
    votes = np.where(m, (2.0 * lab - 1.0) * weight, 0.0)
    out: FloatArray = float(logit(prior)) + sequential_sum(votes)
    return out


def gtx_posterior(
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> Posterior:
    """GTX: hard label, P(y=1) and confidence max(p, 1-p) of equation (3), via :func:`log_odds`."""
    lo = log_odds(labels, accuracies, mask, prior)
    label = np.where(lo > 0, 1, np.where(lo < 0, 0, TIE_LABEL)).astype(np.int64)
    # sigmoid(|lo|) keeps full precision of a confidence close to 1, where 1 - p would not.
    return Posterior(p1=sigmoid(lo), label=label, confidence=sigmoid(np.abs(lo)))


class GTXModel:
    """Equation (3) as a :class:`~gtx_stream.core.models.base.LabelModel`."""

    method = Method.GTX
    reads = ("accuracy",)

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        return gtx_posterior(labels, params["accuracy"], mask, prior)
