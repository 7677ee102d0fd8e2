"""Uniformly random dispatch: each frame's own seeded permutation of its allowed labelers."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from gtx_stream.core.draws import labeler_order
from gtx_stream.pipeline.dispatch.base import LabelerPool
from gtx_stream.store.frames import FrameState

ORDERS_KEPT = 1 << 16
"""Frames whose labeler order is kept (a frame is decided once per label it gets, and drawing
its order again built a seeded numpy generator each time)."""


@functools.lru_cache(maxsize=ORDERS_KEPT)
def _order(seed: int, key: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(labeler_order(seed, key, allowed))


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
        order = _order(self.seed, frame.order_key, tuple(allowed))
        return [lab for lab in frame.not_asked(order) if lab in pool.available]
