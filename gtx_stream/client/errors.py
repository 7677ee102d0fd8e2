"""What the client raises when the pipeline cannot do what was asked, each with a one-line
message. Other Redis errors (a refused command, refused credentials, and any while ``submit``
runs) come through as redis-py raises them."""

from __future__ import annotations

import redis


class ClientError(Exception):
    """Base class of the client's own errors."""


class BudgetSpent(ClientError):
    """The label budget is spent: no frame is opened any more."""


class PipelineFull(ClientError, TimeoutError):
    """``submit`` waited its whole timeout while the pipeline had no room for another frame."""


class UnknownFrame(ClientError, LookupError):
    """No such frame: never opened, or its state expired after it was finalised."""


class FrameDropped(ClientError):
    """The frame's state expired before it was finalised: it is on the dead-letter stream."""

    def __init__(self, frame_id: str, reason: str) -> None:
        super().__init__(f"frame {frame_id} was dropped before it was finalised: {reason}")
        self.frame_id = frame_id
        self.reason = reason


class RedisUnreachable(ClientError, redis.ConnectionError):
    """``wait`` or ``final_labels`` tried to reach Redis again for ``reconnect_seconds`` and
    gave up (a ``redis.ConnectionError`` too, as redis-py's own error was before)."""
