"""Least-loaded dispatch: the labeler with the fewest outstanding requests goes first."""

from __future__ import annotations

from collections.abc import Sequence

from gtx_stream.pipeline.dispatch.base import LabelerPool
from gtx_stream.pipeline.dispatch.random_order import RandomDispatcher
from gtx_stream.store.frames import FrameState


class LeastLoadedDispatcher:
    """Fewest outstanding requests first; ties keep the frame's seeded random order, so that
    equally loaded labelers share the work uniformly."""

    needs_load = True

    def __init__(self, seed: int) -> None:
        self._random = RandomDispatcher(seed)

    def rank(self, frame: FrameState, allowed: Sequence[str], pool: LabelerPool) -> list[str]:
        ranked = self._random.rank(frame, allowed, pool)
        ranked.sort(key=lambda lab: pool.load.get(lab, 0))  # stable: ties keep the order
        return ranked
