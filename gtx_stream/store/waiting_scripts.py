"""Typed wrappers of the sweep's scripts over the ``waiting`` set (``take_due.lua``,
``wake_waiting.lua``): each alone knows its script's KEYS, ARGV and reply.

``waiting`` holds every open frame with nothing outstanding, scored by when the sweep looks at
it again (see :mod:`gtx_stream.pipeline.aggregate.sweeper`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gtx_stream.core.records import text
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptCall


@dataclass(frozen=True)
class StallDelay:
    """How long a frame the sweep took, and left waiting, waits before it is taken again: its
    stalled age (from its opening or the last wake; at least ``shortest``) times 1 + spread,
    spread in [0, 1) fixed by its id; at most ``longest`` times (3 + spread) / 4 seconds.
    ``longest`` 0: none (taken again next sweep)."""

    shortest: float = 0.0
    longest: float = 0.0


NO_DELAY = StallDelay()


def take_due(
    keys: Keys, *, now: float, limit: int, since: float = 0.0, delay: StallDelay = NO_DELAY
) -> ScriptCall[list[str]]:
    """Up to ``limit`` open frames due in ``waiting`` by ``now``, oldest due first; each is
    pushed back by its stall delay (counted from ``since``, the last wake, when that is later
    than its opening), and an entry whose frame is not open any more is removed."""
    return ScriptCall(
        "take_due",
        (keys.waiting, keys.open_frames),
        (repr(now), int(limit), repr(since), repr(delay.shortest), repr(delay.longest)),
        lambda reply: [text(fid) for fid in reply],
    )


@dataclass(frozen=True)
class Woken:
    """What one ``wake_waiting.lua`` call did: frames made due, and the old due time of the
    last one ('' when none), from which the next call of the same wake goes on."""

    frames: int
    last_due: str


def _woken(reply: Any) -> Woken:
    return Woken(int(reply[0]), text(reply[1]))


def wake_waiting(keys: Keys, *, now: float, after: str, limit: int) -> ScriptCall[Woken]:
    """Make at most ``limit`` waiting frames due later than ``after`` (unix seconds, as text:
    a due time read back exactly) due at ``now``, in due order."""
    return ScriptCall("wake_waiting", (keys.waiting,), (repr(now), after, int(limit)), _woken)
