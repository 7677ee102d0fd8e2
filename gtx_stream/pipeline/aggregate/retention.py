"""Retention: what the aggregator trims so that Redis stays bounded (invariant 9).

Every ``retention.every_seconds`` the aggregator calls :meth:`Retention.apply_if_due`, which

- trims ``labels`` and ``opened`` to the entries some consumer group has not acknowledged yet
  and the entries of frames still open (from the oldest open frame's ``opened_at``, minus
  ``clock_skew_seconds`` because that time is the ingester's clock, not Redis's);
- trims ``final`` by age (``final_seconds``) and length (``final_maxlen``), never past what a
  group on it (the exporter's, an application's) has not acknowledged;
- removes from the aggregator's group the consumers of dead aggregators: nothing pending (a
  live aggregator claimed it) and idle for :data:`DEAD_AFTER_CLAIMS` claim periods.

Every trim is ``XTRIM MINID`` inside ``trim_stream.lua``, which reads each group's position in
the same step, so an entry delivered but not acknowledged is never trimmed. A finalised frame's
own keys expire after ``frame_grace_seconds``: that is ``finalise.lua``'s, with
:attr:`Retention.grace_seconds`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import redis

from gtx_stream.config import RetentionSettings
from gtx_stream.store import stream_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner

log = logging.getLogger(__name__)

DEAD_AFTER_CLAIMS = 3  # a consumer idle this many claim periods, nothing pending, is dead


@dataclass
class RetentionReport:
    """One application of retention: entries trimmed per stream, the group that held a stream
    back (stream -> group), and the consumers removed (stream -> names)."""

    trimmed: dict[str, int] = field(default_factory=dict)
    held_by: dict[str, str] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)


class Retention:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        runner: ScriptRunner,
        settings: RetentionSettings,
        *,
        group: str,
        consumer: str,
        claim_idle_seconds: float,
    ) -> None:
        self.r = client
        self.keys = keys
        self.runner = runner
        self.s = settings
        self.group = group
        self.consumer = consumer
        self.dead_idle_ms = int(DEAD_AFTER_CLAIMS * claim_idle_seconds * 1000)
        self._last = time.monotonic()  # the first run after every_seconds: nothing is acked yet
        self._failing = False

    @property
    def grace_seconds(self) -> int:
        """How long ``finalise.lua`` lets a finalised frame's keys live: the grace, or, with
        retention off, as long as the frame's TTL says."""
        return self.s.frame_grace_seconds if self.s.enabled else 0

    def apply_if_due(self) -> RetentionReport | None:
        """Apply retention when enabled and ``every_seconds`` have passed since the last time.

        A Redis refusal (an ACL without XTRIM, say) is logged, not raised: housekeeping must
        not stop the aggregator from finalising frames.
        """
        if not self.s.enabled or time.monotonic() - self._last < self.s.every_seconds:
            return None
        self._last = time.monotonic()
        try:
            report = self.apply()
        except redis.ResponseError as err:
            log.warning("retention failed, streams are not trimmed: %s", err)
            self._failing = True
            return None
        if self._failing:
            log.info("retention applies again")
            self._failing = False
        return report

    def apply(self) -> RetentionReport:
        """Trim the three streams and remove dead consumers, in two round trips."""
        keys, s = self.keys, self.s
        trims = {
            stream: stream_scripts.trim_stream(
                stream, max_age_ms=0, open_frames=keys.open_frames,
                clock_skew_ms=int(s.clock_skew_seconds * 1000), required_group=self.group,
            )
            for stream in (keys.labels, keys.opened)
        }  # fmt: skip
        if s.final_seconds > 0 or s.final_maxlen > 0:
            age = int(s.final_seconds * 1000) if s.final_seconds > 0 else None
            trims[keys.final] = stream_scripts.trim_stream(
                keys.final, max_age_ms=age, max_length=s.final_maxlen
            )
        report = RetentionReport()
        for stream, done in zip(trims, self.runner.run(list(trims.values())), strict=True):
            report.trimmed[stream] = done.entries
            if done.held_by:
                report.held_by[stream] = done.held_by
        groups = (keys.labels, keys.opened)
        drops = [
            stream_scripts.drop_idle_consumers(
                stream, group=self.group, consumer=self.consumer, idle_ms=self.dead_idle_ms
            )
            for stream in groups
        ]
        for stream, names in zip(groups, self.runner.run(drops), strict=True):
            if names:
                report.removed[stream] = names
                log.info("removed consumers idle for %.0f s with nothing pending %s from %s of %s",
                         self.dead_idle_ms / 1000, names, self.group, stream)  # fmt: skip
        log.debug("retention: trimmed %s, held back by %s", report.trimmed, report.held_by)
        return report
