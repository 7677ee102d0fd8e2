"""Seeded draws shared by the simulated labelers, the dispatcher and the offline check.

A simulated labeler's answer and the order in which labelers are offered a frame depend only on
(seed, frame id, labeler id), never on timing or process, so the live pipeline and an offline
run of the same seed see the same label sequence (invariant 6).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from gtx_stream.core.models.base import IntArray


def stable_hash(text: str) -> int:
    """A 63-bit hash of ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def simulated_label(seed: int, frame_id: str, labeler_id: str, truth: int, accuracy: float) -> int:
    """The label a simulated labeler of the given accuracy gives a frame of the given truth."""
    rng = np.random.default_rng([seed, stable_hash(frame_id), stable_hash(labeler_id)])
    correct = rng.random() < accuracy
    return int(truth) if correct else 1 - int(truth)


def labeler_order(seed: int, frame_id: str, labeler_ids: Sequence[str]) -> list[str]:
    """A uniformly random order of ``labeler_ids`` for one frame, fixed by (seed, frame id)."""
    ids = sorted(labeler_ids)
    rng = np.random.default_rng([seed, stable_hash(frame_id)])
    return [ids[i] for i in rng.permutation(len(ids))]


def best_first(skill: ArrayLike, mask: ArrayLike | None = None) -> IntArray:
    """Per row, the positions of ``skill`` best first: the highest estimated skill first, ties
    (and equal skills) in position order; positions left out by ``mask`` last, in order.

    The rule of ``best`` dispatch (:class:`~gtx_stream.pipeline.dispatch.BestDispatcher`) and of
    ``gtx-stream replay --order best``: a row is one frame's candidates in their seeded
    :func:`labeler_order`, so ties keep that random order. The skill is a labeler's one-number
    estimate (:meth:`~gtx_stream.core.models.LabelerParams.weight`: the accuracy, or the
    balanced accuracy of a two-coin labeler) from the parameters in force when it is asked.
    """
    s = np.atleast_2d(np.asarray(skill, dtype=np.float64))
    keep = np.ones(s.shape, dtype=bool) if mask is None else np.atleast_2d(np.asarray(mask))
    key = np.where(keep, -s, np.inf)  # stable: equal keys keep their positions' order
    return np.argsort(key, axis=1, kind="stable")
