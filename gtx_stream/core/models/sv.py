"""SV, soft vote (section 3.1): each labeler spreads its vote by its accuracy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models.base import Method, Posterior, as_batch, from_p1, sequential_sum


def soft_vote(labels: ArrayLike, accuracies: ArrayLike, mask: ArrayLike | None = None) -> Posterior:
    """SV: labeler j puts alpha_j on its label and 1 - alpha_j on the other one.

    Confidence is the winning label's weight over the sum of both labels' weights; since each
    labeler spreads a weight of exactly 1, that sum is the number of labels.
    """
    lab, acc, m = as_batch(labels, accuracies, mask)
    n = m.sum(axis=1)
    to_one = sequential_sum(np.where(m, np.where(lab == 1.0, acc, 1.0 - acc), 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(n > 0, to_one / n, 0.5)
    return from_p1(p1)


class SVModel:
    """Soft vote as a :class:`~gtx_stream.core.models.base.LabelModel`."""

    method = Method.SV
    reads = ("accuracy",)

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        return soft_vote(labels, params["accuracy"], mask)
