"""Who is asked next about a frame: the :class:`Dispatcher` protocol and the pool it picks from.

The aggregator decides *that* a frame needs another label; a dispatcher decides *who* among
the labelers allowed on the frame, never asked about it, live and not backed off. A
dispatcher ranks; :func:`plan` takes the first ``room`` of each frame's ranking and counts
each pick into the pool's load, so that a least-loaded ranking of the next frame in the same
batch sees it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from gtx_stream.core.models import LabelerParams
from gtx_stream.store.frames import FrameState


@dataclass
class LabelerPool:
    """The labelers a request may go to now, and their outstanding requests."""

    available: set[str]
    """Live (a worker beat recently) and not backed off."""
    load: dict[str, int] = field(default_factory=dict)
    """Outstanding requests per labeler (read only by dispatchers that need it)."""
    params: Mapping[str, LabelerParams] = field(default_factory=dict)
    """The parameters decisions are made with now, per labeler (read by ``best`` dispatch)."""


@dataclass(frozen=True)
class Slot:
    """One frame that may get ``room`` more requests, from among ``allowed`` labelers."""

    frame: FrameState
    allowed: Sequence[str]
    room: int


class Dispatcher(Protocol):
    """Ranks the candidates for one frame's next request, best first."""

    needs_load: bool
    """Whether :attr:`LabelerPool.load` must be read from Redis for it."""

    def rank(self, frame: FrameState, allowed: Sequence[str], pool: LabelerPool) -> list[str]:
        """Labelers of ``allowed`` never asked about ``frame`` and available in ``pool``."""
        ...


def plan(
    dispatcher: Dispatcher, slots: Sequence[Slot], pool: LabelerPool, cap: int = 0
) -> list[tuple[str, str]]:
    """``(frame id, labeler)`` of every request to make, at most ``room`` per frame; with
    ``cap``, a labeler whose load reaches it leaves the pool's available ones."""
    picks: list[tuple[str, str]] = []
    for slot in slots:
        if slot.room <= 0:
            continue
        for labeler in dispatcher.rank(slot.frame, slot.allowed, pool)[: slot.room]:
            pool.load[labeler] = pool.load.get(labeler, 0) + 1
            picks.append((slot.frame.frame_id, labeler))
            if cap and pool.load[labeler] >= cap:
                pool.available.discard(labeler)
    return picks
