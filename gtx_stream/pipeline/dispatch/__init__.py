"""Dispatch: who is asked next about a frame (see :mod:`.base` for the protocol)."""

from __future__ import annotations

from gtx_stream.pipeline.dispatch.base import Dispatcher, LabelerPool, Slot, plan
from gtx_stream.pipeline.dispatch.least_loaded import LeastLoadedDispatcher
from gtx_stream.pipeline.dispatch.random_order import RandomDispatcher

__all__ = [
    "Dispatcher",
    "LabelerPool",
    "LeastLoadedDispatcher",
    "RandomDispatcher",
    "Slot",
    "make_dispatcher",
    "plan",
]


def make_dispatcher(name: str, seed: int) -> Dispatcher:
    """The dispatcher of ``aggregator.dispatch`` (``random`` or ``least_loaded``)."""
    if name == "random":
        return RandomDispatcher(seed)
    if name == "least_loaded":
        return LeastLoadedDispatcher(seed)
    raise ValueError(f"unknown dispatch {name!r}: use random or least_loaded")
