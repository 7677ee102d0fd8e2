"""Label models: a posterior from labels plus labeler parameters, one model per file.

=================  ========================================================  =============
module             model                                                     reads
=================  ========================================================  =============
:mod:`.one_coin`   GTX, the one-coin naive-Bayes posterior of equation (3)   ``accuracy``
:mod:`.mv`         MV, majority vote (baseline of section 3.1)               nothing
:mod:`.wmv`        WMV, weighted majority vote                               ``accuracy``
:mod:`.sv`         SV, soft vote                                             ``accuracy``
:mod:`.two_coin`   two-coin (class-conditional) naive Bayes, GTX's rule      ``sensitivity``,
                                                                             ``specificity``
=================  ========================================================  =============

:mod:`.base` holds what they share: the batch layout, :class:`Posterior`, the two protocols
(:class:`LabelModel`, :class:`LabelerParams`) and the log-odds helpers. Everything is pure
numpy and vectorised over examples.

Two entry points. :func:`aggregate` takes the batch arrays (the simulator and the replay,
which hold accuracies as arrays); :func:`posterior_of` takes each example's
``(label, labeler parameters)`` in arrival order (the aggregator, which holds typed
parameters per labeler). Both run the same model code, so streaming equals offline.

A new method is a new file with its :class:`LabelModel` and its :class:`LabelerParams` type,
and an entry in :data:`MODELS`; callers of :func:`posterior_of` do not change. A new labeler
model behind GTX's decision rule (:class:`ModelName`) is an entry in :data:`LABELER_MODELS`
instead: the two-coin model is asked for by its name, ``posterior_of("two_coin", rows)``,
while :class:`Method` (and so every table and the simulator's layout) stays the paper's four.
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
    ModelName,
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
from gtx_stream.core.models.two_coin import (
    UNKNOWN_TWO_COIN,
    TwoCoin,
    TwoCoinModel,
    two_coin_posterior,
)
from gtx_stream.core.models.wmv import WMVModel, weighted_majority_vote

__all__ = [
    "ACCURACY_EPS",
    "LABELER_MODELS",
    "MODELS",
    "TIE_LABEL",
    "UNKNOWN_LABELER",
    "UNKNOWN_TWO_COIN",
    "BoolArray",
    "FloatArray",
    "IntArray",
    "LabelModel",
    "LabelerParams",
    "Method",
    "ModelName",
    "OneCoin",
    "Posterior",
    "TwoCoin",
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
    "two_coin_posterior",
    "weighted_majority_vote",
]

MODELS: dict[Method, LabelModel] = {
    Method.GTX: GTXModel(),
    Method.MV: MVModel(),
    Method.WMV: WMVModel(),
    Method.SV: SVModel(),
}
"""The model behind each method."""

LABELER_MODELS: dict[ModelName, LabelModel] = {
    ModelName.ONE_COIN: MODELS[Method.GTX],
    ModelName.TWO_COIN: TwoCoinModel(),
}
"""GTX's posterior under each labeler model; ``one_coin`` is the ``gtx`` method's model."""


def model_of(method: Method | ModelName | str) -> LabelModel:
    """The :class:`LabelModel` of a method (``gtx``, ``mv``, ``wmv``, ``sv``) or labeler model.

    A labeler model's name (``one_coin``, ``two_coin``) gives GTX's posterior under that model.
    An unknown name is a :class:`ValueError`.
    """
    if method in LABELER_MODELS:
        return LABELER_MODELS[ModelName(method)]
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
    A model that reads other parameters (``two_coin``) is a :class:`ValueError`: ask it with
    ``model_of(name).posterior`` and its own parameter arrays.
    """
    model = model_of(method)
    if not set(model.reads) <= {"accuracy"}:
        raise ValueError(f"{method} reads {', '.join(model.reads)}, not one accuracy per label")
    return model.posterior(labels, {"accuracy": accuracies}, mask, prior)


_PADDING = UNKNOWN_LABELER.accuracy
"""Parameter value of the empty slots of a padded batch (masked out, so never read)."""


def posterior_of(
    method: Method | ModelName | str,
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
