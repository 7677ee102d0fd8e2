"""Dispatch: who is asked next about a frame (see :mod:`.base` for the protocol)."""

from __future__ import annotations

from gtx_stream.pipeline.dispatch.base import Dispatcher, LabelerPool, Slot, plan
from gtx_stream.pipeline.dispatch.best import BestDispatcher
from gtx_stream.pipeline.dispatch.least_loaded import LeastLoadedDispatcher
from gtx_stream.pipeline.dispatch.random_order import RandomDispatcher

__all__ = [
    "BestDispatcher",
    "Dispatcher",
    "LabelerPool",
    "LeastLoadedDispatcher",
    "RandomDispatcher",
    "Slot",
    "make_dispatcher",
    "plan",
]


def make_dispatcher(name: str, seed: int) -> Dispatcher:
    """The dispatcher of ``aggregator.dispatch`` (``random``, ``least_loaded`` or ``best``)."""
    if name == "random":
        return RandomDispatcher(seed)
    if name == "least_loaded":
        return LeastLoadedDispatcher(seed)
    if name == "best":
        return BestDispatcher(seed)
    raise ValueError(f"unknown dispatch {name!r}: use random, least_loaded or best")
