"""Label models: a posterior from labels plus labeler parameters, one model per file.

=================  ========================================================  =============
module             model                                                     reads
=================  ========================================================  =============
:mod:`.one_coin`   GTX, the one-coin naive-Bayes posterior of equation (3)   ``accuracy``
:mod:`.mv`         MV, majority vote (baseline of section 3.1)               nothing
:mod:`.wmv`        WMV, weighted majority vote                               ``accuracy``
:mod:`.sv`         SV, soft vote                                             ``accuracy``
=================  ========================================================  =============

:mod:`.base` holds what they share: the batch layout, :class:`Posterior`, the two protocols
(:class:`LabelModel`, :class:`LabelerParams`) and the log-odds helpers. Everything is pure
numpy and vectorised over examples.

Two entry points. :func:`aggregate` takes the batch arrays (the simulator and the replay,
which hold accuracies as arrays); :func:`posterior_of` takes each example's
``(label, labeler parameters)`` in arrival order (the aggregator, which holds typed
parameters per labeler). Both run the same model code, so streaming equals offline.

A new model (say a two-coin one, sensitivity and specificity per labeler) is a new file with
its :class:`LabelModel` and its :class:`LabelerParams` type, and an entry in :data:`MODELS`;
callers of :func:`posterior_of` do not change.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models.base import (
    ACCURACY_EPS,
    TIE_LABEL,
    BoolArray,
    FloatArray,
    IntArray,
    LabelerParams,
    LabelModel,
    Method,
    Posterior,
    logit,
    sequential_sum,
    sigmoid,
)
from gtx_stream.core.models.mv import MVModel, majority_vote
from gtx_stream.core.models.one_coin import (
    UNKNOWN_LABELER,
    GTXModel,
    OneCoin,
    gtx_posterior,
    log_odds,
)
from gtx_stream.core.models.sv import SVModel, soft_vote
from gtx_stream.core.models.wmv import WMVModel, weighted_majority_vote

__all__ = [
    "ACCURACY_EPS",
    "MODELS",
    "TIE_LABEL",
    "UNKNOWN_LABELER",
    "BoolArray",
    "FloatArray",
    "IntArray",
    "LabelModel",
    "LabelerParams",
    "Method",
    "OneCoin",
    "Posterior",
    "aggregate",
    "gtx_posterior",
    "log_odds",
    "logit",
    "majority_vote",
    "model_of",
    "posterior_of",
    "sequential_sum",
    "sigmoid",
    "soft_vote",
    "weighted_majority_vote",
]

MODELS: dict[Method, LabelModel] = {
    Method.GTX: GTXModel(),
    Method.MV: MVModel(),
    Method.WMV: WMVModel(),
    Method.SV: SVModel(),
}
"""The model behind each method."""


def model_of(method: Method | str) -> LabelModel:
    """The :class:`LabelModel` of a method, by name (``gtx``, ``mv``, ``wmv``, ``sv``)."""
    return MODELS[Method(method)]


def aggregate(
    method: Method | str,
    labels: ArrayLike,
    accuracies: ArrayLike,
    mask: ArrayLike | None = None,
    prior: float = 0.5,
) -> Posterior:
    """Posterior of any one-coin method of section 3.1, by name, from batch arrays.

    ``accuracies[i, j]`` is the accuracy of the labeler who gave ``labels[i, j]``; MV ignores it.
    """
    return model_of(method).posterior(labels, {"accuracy": accuracies}, mask, prior)


_PADDING = UNKNOWN_LABELER.accuracy
"""Parameter value of the empty slots of a padded batch (masked out, so never read)."""


def posterior_of(
    method: Method | str,
    rows: Sequence[Sequence[tuple[int, LabelerParams]]],
    prior: float = 0.5,
) -> Posterior:
    """The posterior of each example from its ``(label, labeler parameters)`` in arrival order.

    The aggregator's entry point: it pads the rows into the batch arrays of the parameters the
    method's model reads, so the caller never deals with the parameter layout of a model.
    """
    model = model_of(method)
    width = max([1, *(len(r) for r in rows)])
    labels = np.zeros((len(rows), width))
    mask = np.zeros((len(rows), width), dtype=bool)
    params = {name: np.full((len(rows), width), _PADDING) for name in model.reads}
    for i, row in enumerate(rows):
        for j, (label, labeler) in enumerate(row):
            labels[i, j] = label
            mask[i, j] = True
            for name, column in params.items():
                column[i, j] = labeler.value(name)
    return model.posterior(labels, params, mask, prior)
