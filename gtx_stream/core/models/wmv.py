"""WMV, weighted majority vote (section 3.1): each vote weighs its labeler's accuracy."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models.base import Method, Posterior, as_batch, from_p1, sequential_sum


def weighted_majority_vote(
    labels: ArrayLike, accuracies: ArrayLike, mask: ArrayLike | None = None
) -> Posterior:
    """WMV: each vote weighs alpha_j; confidence is the winning weight over the total weight.

    Like MV it is certain after one label, so it takes a fixed number k of labels.
    """
    lab, acc, m = as_batch(labels, accuracies, mask)
    w = np.where(m, acc, 0.0)
    total = sequential_sum(w)
    ones = sequential_sum(w * lab)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(total > 0, ones / total, 0.5)
    return from_p1(p1)


class WMVModel:
    """Weighted majority vote as a :class:`~gtx_stream.core.models.base.LabelModel`."""

    method = Method.WMV
    reads = ("accuracy",)

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        return weighted_majority_vote(labels, params["accuracy"], mask)
