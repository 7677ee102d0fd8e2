r"""What every label model shares: the batch layout, log-odds helpers and the two protocols.

A batch of examples is a pair of 2-D arrays ``labels[i, j]`` (the j-th label of example i, in
arrival order) and one array per labeler parameter the model reads (``accuracy[i, j]``: the
accuracy of the labeler who gave that label), plus an optional boolean ``mask[i, j]`` saying
which slots hold a label. Rows may have different numbers of labels; masked-out slots are
ignored, and a row's posterior is bit-for-bit the same however much padding its batch has
(:func:`sequential_sum`), so the aggregator, which pads frames into whatever batch it is
handling, and the simulator, which does not, give identical numbers (invariant 6).

Tie-break: whenever a method's posterior of label 1 is exactly 0.5 (an even split of votes, or
no labels at all) its confidence is 0.5 and its hard label is :data:`TIE_LABEL` (1). Flagging a
frame as positive on a tie is the conservative choice on a production line ("is something
wrong?"), and a fixed rule keeps every run reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

TIE_LABEL = 1
"""Hard label given when a method's posterior of label 1 is exactly 0.5."""

# Accuracies of exactly 0 or 1 would make a single label infinitely strong, and two such
# labelers who disagree would give inf - inf. Clipping to [EPS, 1 - EPS] keeps every log-odds
# finite (|logit| <= 27.6) while a "perfect" labeler still dominates any realistic cohort.
ACCURACY_EPS = 1e-12


class Method(StrEnum):
    """Label aggregation methods of section 3.1 of the paper."""

    GTX = "gtx"
    MV = "mv"
    WMV = "wmv"
    SV = "sv"

    @property
    def uses_threshold(self) -> bool:
        """GTX and SV stop on a confidence threshold; MV and WMV take a fixed number k of labels.

        MV and WMV give confidence 1.0 after a single label, so a threshold means nothing to them
        (section 3.3): the paper collects a constant k labels per example instead.
        """
        return self in (Method.GTX, Method.SV)


class ModelName(StrEnum):
    """The labeler model behind GTX's posterior: one coin per labeler, or one per class.

    An axis apart from :class:`Method`: the baselines and the decision rule are the same for
    both, and ``gtx`` keeps meaning the paper's one-coin equation (3).
    """

    ONE_COIN = "one_coin"
    TWO_COIN = "two_coin"


@dataclass(frozen=True)
class Posterior:
    """Aggregate of each example's labels under a method's model.

    ``p1`` = P(y=1 | labels), ``label`` the hard label, ``confidence`` = max_y P(y | labels).
    The uncertainty of equation (5) is :func:`gtx_stream.core.decision.uncertainty`.
    """

    p1: FloatArray
    label: IntArray
    confidence: FloatArray


class LabelerParams(Protocol):
    """What a label model knows about one labeler.

    One-coin models read a single accuracy (:class:`~gtx_stream.core.models.one_coin.OneCoin`);
    a class-conditional model reads more (a two-coin model: sensitivity and specificity).
    Models name the parameters they read (:attr:`LabelModel.reads`), and
    :func:`~gtx_stream.core.models.posterior_of` lays each one out as an array with
    :meth:`value`, so a new kind of parameters needs no change where posteriors are asked for.
    """

    def weight(self) -> float:
        """The labeler's one-number accuracy: what one-coin models and the baselines read."""
        ...

    def value(self, name: str) -> float:
        """The parameter ``name``; :class:`KeyError` when this kind of labeler has none."""
        ...


class LabelModel(Protocol):
    """A label model: the posterior of each example from its labels and labelers' parameters."""

    @property
    def method(self) -> Method:
        """The method's name in the configuration and in results."""
        ...

    @property
    def reads(self) -> tuple[str, ...]:
        """Labeler parameters the model reads (:meth:`LabelerParams.value` names)."""
        ...

    def posterior(
        self,
        labels: ArrayLike,
        params: Mapping[str, ArrayLike],
        mask: ArrayLike | None = None,
        prior: float = 0.5,
    ) -> Posterior:
        """Posterior, hard label and confidence of each row; ``params[name][i, j]`` per label."""
        ...


def sequential_sum(x: FloatArray) -> FloatArray:
    """Sum over each row's labels in arrival order.

    A strictly sequential sum (the last column of cumsum), unlike ``sum``, whose pairwise
    blocking depends on the row width: the same labels then give bit-for-bit the same
    posterior however much padding a batch has, in the aggregator and in the simulator alike.
    """
    if x.shape[1] == 0:
        return np.zeros(x.shape[0])
    out: FloatArray = np.cumsum(x, axis=1)[:, -1]
    return out


def as_batch(
    labels: ArrayLike, accuracies: ArrayLike | None, mask: ArrayLike | None
) -> tuple[FloatArray, FloatArray, BoolArray]:
    """``labels``, a per-label parameter (1.0 when None) and ``mask`` as 2-D arrays of one shape."""
    lab = np.atleast_2d(np.asarray(labels, dtype=np.float64))
    acc = (
        np.ones_like(lab)
        if accuracies is None
        else np.broadcast_to(np.atleast_2d(np.asarray(accuracies, dtype=np.float64)), lab.shape)
    )
    m = (
        np.ones(lab.shape, dtype=bool)
        if mask is None
        else np.broadcast_to(np.atleast_2d(np.asarray(mask, dtype=bool)), lab.shape)
    )
    return lab, acc, m


def from_p1(p1: FloatArray) -> Posterior:
    """Hard label (ties: :data:`TIE_LABEL`) and confidence max(p, 1 - p) of a share of votes."""
    label = np.where(p1 > 0.5, 1, np.where(p1 < 0.5, 0, TIE_LABEL)).astype(np.int64)
    return Posterior(p1=p1, label=label, confidence=np.maximum(p1, 1.0 - p1))


def logit(p: ArrayLike) -> FloatArray:
    """log(p / (1 - p)), elementwise."""
    p = np.asarray(p, dtype=np.float64)
    return np.log(p) - np.log1p(-p)


def sigmoid(x: ArrayLike) -> FloatArray:
    """1 / (1 + exp(-x)) without overflow for large |x|.

    For x below about -745 the true value is below the smallest float64 and rounds to 0.0.
    """
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(under="ignore"):
        out: FloatArray = np.exp(-np.logaddexp(0.0, -x))
    return out
