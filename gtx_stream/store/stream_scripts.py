"""Typed wrappers of the stream-retention scripts (``trim_stream.lua``,
``drop_idle_consumers.lua``): each alone knows its script's KEYS, ARGV and reply.

Both scripts read the groups of a stream and act on them in one step, so that no entry is
delivered, and no consumer reads, between the check and the trim or the removal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gtx_stream.core.records import text
from gtx_stream.store.scripts import ScriptCall

LENGTH_RULE_CHUNK = 10_000  # the length rule trims at most this many entries a call


@dataclass(frozen=True)
class Trimmed:
    """What ``trim_stream.lua`` did: entries removed, and the group whose unacknowledged
    entries held the trim back ('' when none did)."""

    entries: int
    held_by: str


def _trimmed(reply: Any) -> Trimmed:
    return Trimmed(int(reply[0]), text(reply[1]))


def trim_stream(
    stream: str,
    *,
    max_age_ms: int | None,
    max_length: int = 0,
    open_frames: str | None = None,
    clock_skew_ms: int = 0,
    required_group: str = "",
) -> ScriptCall[Trimmed]:
    """Trim ``stream`` to what its groups have acknowledged, as far as the rules allow.

    An entry may go when it is older than ``max_age_ms`` (``None``: no age rule; 0: any
    entry) or beyond the newest ``max_length`` (0: no length rule). With ``open_frames`` (the
    open zset) nothing goes from the oldest open frame's ``opened_at`` minus ``clock_skew_ms``
    on; with ``required_group`` nothing goes until that group exists.
    """
    keys = (stream,) if open_frames is None else (stream, open_frames)
    age = "" if max_age_ms is None else str(int(max_age_ms))
    args = (age, int(max_length), int(clock_skew_ms), LENGTH_RULE_CHUNK, required_group)
    return ScriptCall("trim_stream", keys, args, _trimmed)


def _names(reply: Any) -> list[str]:
    return [text(name) for name in reply]


def drop_idle_consumers(
    stream: str, *, group: str, consumer: str, idle_ms: int
) -> ScriptCall[list[str]]:
    """Remove the consumers of ``group`` other than ``consumer`` that have nothing pending and
    were idle over ``idle_ms``; the reply names them."""
    return ScriptCall("drop_idle_consumers", (stream,), (group, consumer, int(idle_ms)), _names)
