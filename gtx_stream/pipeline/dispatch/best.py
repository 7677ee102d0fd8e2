"""Best-first dispatch: the labeler with the highest current estimated skill goes first."""

from __future__ import annotations

from collections.abc import Sequence

from gtx_stream.core.draws import best_first
from gtx_stream.core.models import UNKNOWN_LABELER
from gtx_stream.pipeline.dispatch.base import LabelerPool
from gtx_stream.pipeline.dispatch.random_order import RandomDispatcher
from gtx_stream.store.frames import FrameState


class BestDispatcher:
    """Highest estimated skill first (:func:`~gtx_stream.core.draws.best_first`, the rule
    ``gtx-stream replay --order best`` uses): the accuracy of a one-coin labeler, the balanced
    accuracy of a two-coin one, from the parameters in :attr:`LabelerPool.params` (those the
    aggregator decides with, so an estimator's refit moves the ranking); ties keep the frame's
    seeded random order. A labeler without parameters ranks as one of accuracy 0.5.

    Every frame goes to the best live labeler first, so that one gets the most requests; a
    labeler stays in the ranking however loaded it is (its lease and ``max_inflight`` still
    apply per frame).
    """

    needs_load = False

    def __init__(self, seed: int) -> None:
        self._random = RandomDispatcher(seed)

    def rank(self, frame: FrameState, allowed: Sequence[str], pool: LabelerPool) -> list[str]:
        ranked = self._random.rank(frame, allowed, pool)
        skill = [pool.params.get(lab, UNKNOWN_LABELER).weight() for lab in ranked]
        return [ranked[i] for i in best_first(skill)[0]] if ranked else []
