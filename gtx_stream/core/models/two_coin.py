r"""The two-coin (class-conditional) naive-Bayes model, and two-coin labeler parameters.

The paper's one-coin labeler (:mod:`.one_coin`) is right with the same probability whatever the
true class. Real crowds are not: on the bluebirds dataset P(label 0 | y=1) = 0.48 while
P(label 1 | y=0) = 0.27. A two-coin labeler j tosses one coin per class,

.. math::
    s_j = P(Y^j = 1 \mid Y = 1) \quad\text{(sensitivity)}, \qquad
    t_j = P(Y^j = 0 \mid Y = 0) \quad\text{(specificity)},

and labels are independent given the true label, as in equation (3). The paper names this model
as future work (section 5); it is the binary Dawid-Skene model (Dawid and Skene, 1979). With
s_j = t_j = alpha_j it is the one-coin model, bit for bit (:func:`log_odds`).
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
class TwoCoin:
    """Two-coin labeler parameters: P(label 1 | y=1) and P(label 0 | y=0)."""

    sensitivity: float
    specificity: float

    @classmethod
    def symmetric(cls, accuracy: float) -> TwoCoin:
        """The two-coin form of a one-coin labeler: both coins are its accuracy."""
        return cls(accuracy, accuracy)

    def weight(self) -> float:
        """Balanced accuracy (s + t) / 2: the share right at a class prior of 1/2.

        What the one-number baselines (WMV, SV) would weigh this labeler with; the two-coin
        posterior itself reads both parameters.
        """
        return (self.sensitivity + self.specificity) / 2.0

    def value(self, name: str) -> float:
        if name == "sensitivity":
            return self.sensitivity
        if name == "specificity":
            return self.specificity
        raise KeyError(f"two-coin parameters have no {name!r}")


UNKNOWN_TWO_COIN = TwoCoin(0.5, 0.5)
"""A labeler nothing is known about: s = t = 1/2, so its labels carry no weight.

Any labeler with s + t = 1 carries none: its label is equally likely under both classes.
"""


def log_odds(
    labels: ArrayLike,
    sensitivity: ArrayLike,
    specificity: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> FloatArray:
    r"""Posterior log-odds of label 1 under the two-coin naive-Bayes model.

    .. math::
        \log\frac{P(Y_i=1\mid\mathcal L(i))}{P(Y_i=0\mid\mathcal L(i))}
        = \log\frac{\pi}{1-\pi}
          + \sum_{j\in\mathcal J(i)} \Big[ y_i^j \log\frac{s_j}{1-t_j}
          + (1-y_i^j) \log\frac{1-s_j}{t_j} \Big]

    As in equation (3) the product of one likelihood ratio per label becomes a sum of logs,
    summed label by label in arrival order
    (:func:`~gtx_stream.core.models.base.sequential_sum`), so a row's log-odds is the same bit
    for bit however its batch is padded. Both parameters are clipped to [EPS, 1 - EPS]
    (:data:`~gtx_stream.core.models.base.ACCURACY_EPS`) so every term stays finite.

    Each term is written ``log(s) - log1p(-t)`` (label 1) or ``log1p(-s) - log(t)`` (label 0):
    with s = t = alpha these are exactly the one-coin ``logit(alpha)`` and its negation, so the
    two models agree bit for bit on one-coin labelers.
    """
    lab, sens, m = as_batch(labels, sensitivity, mask)
    spec = np.broadcast_to(np.atleast_2d(np.asarray(specificity, dtype=np.float64)), lab.shape)
    if not 0.0 < prior < 1.0:
        raise ValueError(f"class prior must be in (0, 1), got {prior}")
    s = np.clip(sens, ACCURACY_EPS, 1.0 - ACCURACY_EPS)
    t = np.clip(spec, ACCURACY_EPS, 1.0 - ACCURACY_EPS)
    said_one = np.log(s) - np.log1p(-t)
    said_zero = np.log1p(-s) - np.log(t)
    votes = np.where(m, np.where(lab == 1.0, said_one, said_zero), 0.0)
    out: FloatArray = float(logit(prior)) + sequential_sum(votes)
    return out


def two_coin_posterior(
    labels: ArrayLike,
    sensitivity: ArrayLike,
    specificity: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> Posterior:
    """Hard label, P(y=1) and confidence max(p, 1-p) of the two-coin model (:func:`log_odds`)."""
    lo = log_odds(labels, sensitivity, specificity, mask, prior)
    label = np.where(lo > 0, 1, np.where(lo < 0, 0, TIE_LABEL)).astype(np.int64)
    # as in GTX: sigmoid(|lo|) keeps full precision of a confidence close to 1
    return Posterior(p1=sigmoid(lo), label=label, confidence=sigmoid(np.abs(lo)))


class TwoCoinModel:
    """The two-coin posterior as a :class:`~gtx_stream.core.models.base.LabelModel`.

    Its method is GTX: the same decision rule (stop at confidence tau, at most kappa labels),
    with class-conditional labelers in place of one-coin ones.
    """

    method = Method.GTX
    reads = ("sensitivity", "specificity")

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        return two_coin_posterior(labels, params["sensitivity"], params["specificity"], mask, prior)
