"""MV, majority vote (section 3.1): one vote per label, whoever gave it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models.base import Method, Posterior, as_batch, from_p1, sequential_sum


def majority_vote(labels: ArrayLike, mask: ArrayLike | None = None) -> Posterior:
    """MV: confidence is the share of votes for the winning label (section 3.1).

    With one label the share is 1.0, so a confidence threshold means nothing to MV: it takes a
    fixed number k of labels instead (:attr:`Method.uses_threshold`).
    """
    lab, _, m = as_batch(labels, None, mask)
    n = m.sum(axis=1)
    ones = sequential_sum(np.where(m, lab, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(n > 0, ones / n, 0.5)
    return from_p1(p1)


class MVModel:
    """Majority vote as a :class:`~gtx_stream.core.models.base.LabelModel`; reads no parameter."""

    method = Method.MV
    reads: tuple[str, ...] = ()

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        return majority_vote(labels, mask)
