"""Housekeeping that heals what a crash, a silent labeler or a missing one left: leases that ran
out, frames left waiting with nothing outstanding, and open frames whose state expired.

Every open frame is found through one of two time-ordered sets, never by walking the open set:

- with an outstanding request, through ``leases`` (request -> lease deadline);
- with none, through ``waiting`` (frame -> when the sweep looks at it again). The script that
  leaves a frame so puts it there in the same atomic step (``open_frame.lua``: not asked yet;
  ``apply_labels.lua``: its last outstanding request answered or failed; ``expire_request.lua``:
  its last lease ran out), and the one that asks or ends it takes it out (``ask.lua`` on a
  granted request, ``finalise.lua``, ``drop_frame.lua``).

A frame stays in ``waiting`` while its decision asks for a labeler that cannot be asked: none is
live, those left are backed off or paused, the budget refused the request; while strategy
uncertainty holds it for the sampler to pick; or when a crash cut the step short between
applying a label and asking again. Each sweep takes at most ``max_due`` due frames, oldest due
first, and pushes each back by a delay that grows with how long it has stalled (``take_due.lua``:
from ``aggregator.sweep_seconds``, 2 to 3 times longer each time, up to three quarters to all
of ``aggregator.stall_max_seconds``, spread by frame), so a sweep costs what is due, not what is
open, nor every stalled frame every second.

What could end a stall is what the sweeper watches, once a sweep: the registered labelers and
their parameters (a registration, new accuracies, an unregistered person), who can be asked
now (a labeler live again, a backoff or a pause over), the budget's limit and whether it ran
out, and (with ``aggregator.budget_per_source``) which sources have spent their share. When
any of it changes, every waiting frame pushed back is made due again (``wake_waiting.lua``, at
most ``WAKE_CHUNK`` a sweep, the rest the next sweeps), and their delays start again from the
shortest. So nothing waits on its delay for a change the sweeper sees; the delay bounds how late
a frame is decided for anything it does not see. A new sweeper (an aggregator starting) wakes
them once: it cannot know what changed before it ran.

A Redis from before ``waiting`` has open frames that are in neither set: the first sweep that
finds no ``waiting:seeded`` mark puts every open frame in ``waiting`` (due now) and sets the mark.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.models import LabelerParams
from gtx_stream.core.records import text
from gtx_stream.pipeline.aggregate.labelers import LabelerBook
from gtx_stream.store import frame_scripts as scripts
from gtx_stream.store.keys import Keys, split_lease_member
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.waiting_scripts import NO_DELAY, StallDelay, take_due, wake_waiting

log = logging.getLogger(__name__)

GONE_REASON = "frame state expired before finalisation (frame TTL)"

MAX_DUE = 64
"""Expired leases, and due waiting frames, that one sweep takes at most (each); the rest are
taken by the next sweeps, oldest first, and the aggregator sweeps again at its next step while
a sweep left some (:attr:`Sweeper.backlog`), not a ``sweep_seconds`` later. Deciding a frame
again costs 60 to 120 µs here, so a sweep stays within about 10 ms however many are due (a wake
of 500 stalled frames, an outage's expired leases): the work is spread over steps, not done in
one (BENCHMARKS.md, Sweeps). It was 1,000: 47 to 274 ms for a wake of 500."""

SEED_CHUNK = 10_000
"""Open frames per ZADD of the one-time seeding of ``waiting``."""

WAKE_CHUNK = 2000
"""Waiting frames one sweep makes due again after a change (twice what a sweep takes, so a
wake stays ahead of the sweeps that decide what it woke)."""


@dataclass(frozen=True)
class Watched:
    """What a stalled frame waits on, as the sweeper saw it: a change wakes the waiting frames."""

    params: Mapping[str, LabelerParams]
    """Registered labelers and the parameters decisions weigh them with."""
    available: frozenset[str]
    """Labelers a request may go to now: live, not backed off, not paused."""
    limit: str | None
    """The budget's limit (None: unlimited)."""
    spent_out: bool
    """Whether the budget has no label left."""
    sources_out: frozenset[str]
    """Sources that have spent their share of the budget (``aggregator.budget_per_source``)."""


class Sweeper:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        runner: ScriptRunner,
        max_due: int = MAX_DUE,
        *,
        book: LabelerBook | None = None,
        delay: StallDelay = NO_DELAY,
        clock: Callable[[], float] = time.time,
        source_share: int = 0,
    ) -> None:
        """``book``: the aggregator's labelers, watched for changes that wake stalled frames
        (None: nothing watched, no wakes); ``delay``: how a frame left waiting is pushed back
        (the default: not at all, due again next sweep); ``clock``: unix seconds;
        ``source_share``: ``aggregator.budget_per_source`` (0: none)."""
        self.r = client
        self.keys = keys
        self.runner = runner
        self.max_due = max_due
        self.book = book
        self.delay = delay
        self.clock = clock
        self.source_share = source_share
        self._seeded = False
        self._watched: Watched | None = None
        self._woke_at = 0.0  # the last wake: stalled ages count from it
        self._wake_after: str | None = None  # a wake under way: go on after this due time
        self.budget_seen: dict[str, str] | None = None
        """The budget hash as the last sweep read it (a cluster shard's give-back looks at
        it: ``ShardBudget.tend``), and when (``time.monotonic()``)."""
        self.budget_seen_at = -float("inf")
        self.backlog = False
        """Whether the last sweep left due work (it took ``max_due`` of something, or a wake is
        under way): the aggregator sweeps again at its next step."""

    @classmethod
    def for_aggregator(
        cls,
        client: redis.Redis,
        keys: Keys,
        runner: ScriptRunner,
        settings: AggregatorSettings,
        book: LabelerBook,
    ) -> Sweeper:
        """The aggregator's sweeper: stalled frames pushed back from ``sweep_seconds`` up to
        ``stall_max_seconds``, woken by changes of ``book``'s labelers and of the budget."""
        delay = StallDelay(settings.sweep_seconds, settings.stall_max_seconds)
        return cls(client, keys, runner, book=book, delay=delay,
                   source_share=settings.budget_per_source)  # fmt: skip

    def expire_leases(self) -> set[str]:
        """Frames whose outstanding request's lease ran out (now late): ask someone else."""
        now = self.clock()
        members = self.r.zrangebyscore(self.keys.leases, "-inf", now, start=0, num=self.max_due)
        due = [text(m) for m in members]
        self.backlog = len(due) >= self.max_due > 0
        if not due:
            return set()
        pairs = [split_lease_member(m) for m in due]
        results = self.runner.run([
            scripts.expire_request(self.keys, frame_id=fid, labeler=lab, now=now)
            for fid, lab in pairs
        ])  # fmt: skip
        expired = {fid for (fid, _), res in zip(pairs, results, strict=True) if res}
        if expired:
            log.info("leases expired on %d frames: deciding them again (another labeler, or "
                     "exhausted where none is left)", len(expired))  # fmt: skip
        return expired

    def open_frames(self) -> set[str]:
        """Open frames with nothing outstanding that are due to be decided again (at most
        ``max_due``), each pushed back by its stall delay; the first call on a Redis without
        the ``waiting`` set seeds it first. Wakes the waiting frames first when what they wait
        on changed (:meth:`wake_if_changed`)."""
        if not self._seeded:
            self.seed_waiting()
        self.wake_if_changed()
        call = take_due(self.keys, now=self.clock(), limit=self.max_due, since=self._woke_at,
                        delay=self.delay)  # fmt: skip
        due: list[str] = self.runner.run_one(call)
        self.backlog |= len(due) >= self.max_due > 0 or self._wake_after is not None
        return set(due)

    def watched(self) -> Watched | None:
        """What a stalled frame waits on now (None without a ``book``): two round trips,
        the parameters re-read at most once a second."""
        if self.book is None:
            return None
        available = frozenset(self.book.pool(with_load=False).available)
        budget = {text(k): text(v) for k, v in self.r.hgetall(self.keys.budget).items()}
        self.budget_seen, self.budget_seen_at = budget, time.monotonic()
        limit = budget.get("limit")
        left = scripts.budget_left(limit, budget.get("spent"))
        share = self.source_share

        def cap(src: str) -> int:  # on a cluster's shard, what it leased of the share
            return int(budget.get(f"limit:{src}", 0)) if self.keys.cluster else share

        spent = {k.removeprefix("spent:"): int(v) for k, v in budget.items()
                 if share and k.startswith("spent:")}  # fmt: skip
        out = frozenset(src for src, n in spent.items() if n >= cap(src))
        return Watched(dict(self.book.params()), available, limit, left is not None and left <= 0,
                       out)  # fmt: skip

    def wake_if_changed(self) -> int:
        """Make the pushed-back waiting frames due now when what they wait on changed since the
        last sweep (and on the first sweep), at most ``WAKE_CHUNK`` a call, going on from
        where the last call stopped; returns how many were woken."""
        watched = self.watched()
        if watched is None:
            return 0
        now = self.clock()
        if watched != self._watched:
            self._watched = watched
            self._woke_at, self._wake_after = now, repr(now)
        if self._wake_after is None:
            return 0
        call = wake_waiting(self.keys, now=self._woke_at, after=self._wake_after,
                            limit=WAKE_CHUNK)  # fmt: skip
        woken = self.runner.run_one(call)
        self._wake_after = woken.last_due if woken.frames == WAKE_CHUNK else None
        if woken.frames:
            log.info("woke %d waiting frames: what they wait on changed", woken.frames)
        return woken.frames

    def seed_waiting(self) -> int:
        """Once per Redis (the ``waiting:seeded`` mark): put every open frame in ``waiting``,
        due now, keeping the ones there already. Returns how many open frames were walked (0
        when the mark was found)."""
        if self.r.exists(self.keys.waiting_seeded):
            self._seeded = True
            return 0
        frames = self.walk_open_frames()
        now = self.clock()
        pipe = self.r.pipeline(transaction=False)
        for i in range(0, len(frames), SEED_CHUNK):
            pipe.zadd(self.keys.waiting, dict.fromkeys(frames[i : i + SEED_CHUNK], now), nx=True)
        pipe.set(self.keys.waiting_seeded, repr(now))  # last: a crash before it walks again
        pipe.execute()
        self._seeded = True
        log.info("waiting set seeded with the %d open frames (once per Redis)", len(frames))
        return len(frames)

    def walk_open_frames(self) -> list[str]:
        """Every open frame: what each sweep re-decided before ``waiting`` (the seeding's walk,
        and the baseline of benchmarks/bench_sweep.py)."""
        return [text(f) for f in self.r.zrange(self.keys.open_frames, 0, -1)]

    def drop_gone(self, frame_ids: Sequence[str]) -> None:
        """Open frames whose hash is gone leave the open set, each with one dead letter."""
        self.runner.run([scripts.drop_frame(self.keys, fid, GONE_REASON) for fid in frame_ids])
