"""``wait``: block until one frame is final, and return its record.

The frame hash says whether the frame is final (``finalise.lua`` copies the record into it,
with ``final_id``). Otherwise the waiter blocks on the final stream (XREAD from the newest
entry it knew of before it looked at the hash, so a frame finalised in between is not missed)
and looks for the frame among the new entries: no polling while nothing is finalised, and one
round trip per batch of finalisations while others are.

A Redis restart while it waits is ridden out (:mod:`.reconnect`): once Redis answers again the
waiter looks at the hash again and blocks from there, so a frame finalised meanwhile is found.
"""

from __future__ import annotations

import json
import time
from typing import Any, cast

import redis

from gtx_stream.client.errors import FrameDropped, UnknownFrame
from gtx_stream.client.reconnect import UNAVAILABLE, Reconnect
from gtx_stream.core.records import DeadLetter, FinalRecord, RecordError, decode_fields, text
from gtx_stream.pipeline.aggregate.sweeper import GONE_REASON
from gtx_stream.store.keys import Keys

BLOCK_MAX_SECONDS = 5.0  # the hash is looked at again this often: a frame may expire meanwhile
DEAD_LETTERS_SEARCHED = 10_000  # newest first: a frame is dropped soon after it was opened
PAGE = 500


def wait(
    client: redis.Redis,
    keys: Keys,
    frame_id: str,
    timeout: float | None,
    socket_timeout: float,
    link: Reconnect | None = None,
) -> FinalRecord:
    """The final record of ``frame_id``, once it is final.

    Raises TimeoutError after ``timeout`` seconds (None: waits for ever), :class:`FrameDropped`
    when its state expired before it was finalised, :class:`UnknownFrame` when Redis holds no
    such frame (never opened, or finalised so long ago that its state expired: read it from the
    final stream). While Redis is unreachable it tries again as ``link`` says (:mod:`.reconnect`),
    within ``timeout`` too: a TimeoutError that says so when it ends first (without a ``link``,
    redis-py's error is raised at once).
    """
    link = link if link is not None else Reconnect("redis", 0)
    keys = keys.of_frame(frame_id)  # on a Redis Cluster: its shard's final stream, open set
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return _wait(client, keys, frame_id, timeout, deadline, socket_timeout, link)
        except UNAVAILABLE as err:
            if link.seconds != 0 and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"frame {frame_id} is not final after {timeout:g} s (redis at {link.url} "
                    f"unreachable for the last {link.down_for:.1f} s)"
                ) from err
            link.lost(err, until=deadline)


def _wait(
    client: redis.Redis,
    keys: Keys,
    frame_id: str,
    timeout: float | None,
    deadline: float | None,
    socket_timeout: float,
    link: Reconnect,
) -> FinalRecord:
    # XREAD BLOCK must answer before the client's socket timeout ends the call
    block = max(0.001, min(BLOCK_MAX_SECONDS, socket_timeout / 2))
    while True:
        pipe = client.pipeline(transaction=False)
        pipe.xrevrange(keys.final, count=1)
        pipe.hgetall(keys.frame(frame_id))
        pipe.zscore(keys.open_frames, frame_id)
        newest, raw, open_since = pipe.execute()
        link.back()
        last = text(newest[0][0]) if newest else "0-0"
        fields = decode_fields(raw)
        if fields.get("state") == "final":
            return FinalRecord.from_fields(fields, fields.get("final_id", ""))
        if not fields:
            if open_since is not None:  # the sweeper has not dead-lettered it yet
                raise FrameDropped(frame_id, GONE_REASON)
            reason = _dead_reason(client, keys, frame_id)
            if reason is not None:
                raise FrameDropped(frame_id, reason)
            raise UnknownFrame(f"no frame {frame_id} (never opened, or its state expired)")
        while True:
            left = block if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"frame {frame_id} is not final after {timeout:g} s")
            wait_ms = max(1, int(min(left, block) * 1000))  # BLOCK 0 would block for ever
            reply = client.xread({keys.final: last}, count=PAGE, block=wait_ms)
            if not reply:
                break  # nothing finalised for a while: look at the hash again
            for entry_id, entry in cast(list[Any], reply)[0][1]:
                last = text(entry_id)
                entry_fields = decode_fields(entry)
                if entry_fields.get("frame_id") == frame_id:
                    return FinalRecord.from_fields(entry_fields, last)


def _dead_reason(client: redis.Redis, keys: Keys, frame_id: str) -> str | None:
    """The reason of the newest dead letter that dropped ``frame_id``, if there is one among
    the newest :data:`DEAD_LETTERS_SEARCHED` (labels that could not be applied share it)."""
    end = "+"
    for _ in range(DEAD_LETTERS_SEARCHED // PAGE):
        page = cast(list[Any], client.xrevrange(keys.dead, max=end, count=PAGE))
        for entry_id, raw in page:
            end = f"({text(entry_id)}"
            try:
                letter = DeadLetter.from_fields(decode_fields(raw))
                dropped = (
                    letter.kind == "frame" and json.loads(letter.payload)["frame_id"] == frame_id
                )
            except (RecordError, ValueError, TypeError, KeyError):
                continue  # not a frame's dead letter, or a garbled one
            if dropped:
                return letter.reason
        if len(page) < PAGE:
            return None
    return None
