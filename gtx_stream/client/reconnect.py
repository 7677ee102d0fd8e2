"""Riding out a Redis restart: ``wait`` and ``final_labels`` try again with a backoff.

A Redis that restarts (or is briefly unreachable) makes every call raise a ConnectionError
until it is back; a consumer run as a background service should not die of it. Each outage is
one WARNING line when it begins and one INFO line when Redis answers again; in between the
call is tried again after 0.1 s, doubling up to 5 s, until ``reconnect_seconds`` have passed
since the outage began. Then :class:`~gtx_stream.client.errors.RedisUnreachable` is raised, one
line naming the URL and how long it tried. ``reconnect_seconds`` 0 raises redis-py's error at
once; None tries for ever. Refused credentials are raised at once: waiting does not mend them.
"""

from __future__ import annotations

import logging
import math
import time

import redis

from gtx_stream.client.errors import RedisUnreachable
from gtx_stream.store.cluster import UNAVAILABLE

log = logging.getLogger(__name__)

__all__ = ["UNAVAILABLE", "Reconnect", "check_reconnect_seconds"]

FIRST_WAIT = 0.1
MAX_WAIT = 5.0


def check_reconnect_seconds(what: str, seconds: float | None) -> None:
    """ValueError, in one line, for a ``reconnect_seconds`` that is no number >= 0 (or None)."""
    if seconds is None:
        return
    ok = isinstance(seconds, int | float) and not isinstance(seconds, bool)
    if not ok or math.isnan(seconds) or seconds < 0:
        raise ValueError(
            f"{what}: reconnect_seconds must be a number >= 0 (0: raise at once) or None "
            f"(for ever), got {seconds!r}"
        )


class Reconnect:
    """The outage (if any) of one ``wait`` or ``final_labels`` call: :meth:`lost` after a call
    failed (it sleeps one backoff step, or raises), :meth:`back` after a call succeeded."""

    def __init__(self, url: str, seconds: float | None) -> None:
        self.url = url  # redacted: it goes into log lines and messages
        self.seconds = seconds
        self.down_since: float | None = None
        self._wait = FIRST_WAIT

    @property
    def down_for(self) -> float:
        """Seconds since the outage began (0 while Redis answers)."""
        return 0.0 if self.down_since is None else time.monotonic() - self.down_since

    def lost(self, err: BaseException, until: float | None = None) -> None:
        """``err`` (one of :data:`UNAVAILABLE`) came from a call: sleep one backoff step (at
        most until ``until``, the caller's own deadline on the monotonic clock), or raise when
        reconnecting is off, the credentials were refused, or the time to reconnect is over."""
        if self.seconds == 0 or isinstance(err, redis.AuthenticationError):
            raise err
        now = time.monotonic()
        reason = " ".join(str(err).split()) or type(err).__name__
        if self.down_since is None:
            self.down_since = now
            bound = "for ever" if self.seconds is None else f"for up to {self.seconds:g} s"
            log.warning("redis at %s unreachable (%s): reconnecting %s", self.url, reason, bound)
        left = math.inf if self.seconds is None else self.down_since + self.seconds - now
        if left <= 0:
            raise RedisUnreachable(
                f"redis at {self.url} stayed unreachable: gave up after {now - self.down_since:.1f}"
                f" s of reconnecting (reconnect_seconds={self.seconds:g}): {reason}"
            ) from err
        if until is not None:
            left = min(left, until - now)
        time.sleep(max(0.0, min(self._wait, left)))
        self._wait = min(2 * self._wait, MAX_WAIT)

    def back(self) -> None:
        """A call succeeded: the outage, if there was one, is over."""
        if self.down_since is not None:
            log.info("redis at %s is back after %.1f s", self.url, self.down_for)
            self.down_since = None
            self._wait = FIRST_WAIT
