"""Uniformly random dispatch: each frame's own seeded permutation of its allowed labelers."""

from __future__ import annotations

from collections.abc import Sequence

from gtx_stream.core.draws import labeler_order
from gtx_stream.pipeline.dispatch.base import LabelerPool
from gtx_stream.store.frames import FrameState


class RandomDispatcher:
    """Walks :func:`~gtx_stream.core.draws.labeler_order` (seed, frame) past those already
    asked or not available.

    The permutation is of *all* labelers allowed on the frame, fixed by the seed and the frame
    (or its task), so the labelers a frame gets are the same sequence an offline run of the
    same seed uses (invariant 6), whatever the timing.
    """

    needs_load = False

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def rank(self, frame: FrameState, allowed: Sequence[str], pool: LabelerPool) -> list[str]:
        order = labeler_order(self.seed, frame.order_key, allowed)
        return [lab for lab in frame.not_asked(order) if lab in pool.available]
