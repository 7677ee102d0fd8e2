"""The aggregator: applies labels to frames once, decides, dispatches and finalises.

One loop, all state in Redis (so a restarted or a second aggregator continues exactly):

1. read a batch from the ``labels`` and ``opened`` streams through the consumer group
   (and, now and then, claim what a dead consumer left pending): :class:`GroupConsumer`;
2. apply each label or failure report once with ``apply_labels.lua``; whatever cannot be
   applied goes to ``dead``: :class:`LabelIntake`;
3. decide every touched frame with the core math: :class:`Decider`; finalise
   (``finalise.lua``) or ask one more labeler: :class:`Requester` (a
   :mod:`~gtx_stream.pipeline.dispatch` dispatcher picks, ``ask.lua`` records the request,
   then an RQ job);
4. acknowledge the batch in one XACK per stream.

Under ``aggregator.strategy = "uncertainty"`` (strategy 2) the decider asks only frames without
a label, and :class:`~gtx_stream.pipeline.aggregate.uncertainty.UncertaintySampler` picks the
most uncertain frame next, after every step; once the budget is spent and nothing is
outstanding, every open frame is decided (and finalised) in the same step.

Every ``sweep_seconds`` it also expires leases that ran out and re-decides open frames with
nothing outstanding, which heals any step a crash cut short (:class:`Sweeper`). A failure
report re-decides its frame at once: another labeler is asked in the same step. Every
``retention.every_seconds`` it trims the streams (:class:`Retention`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping, Sequence

import redis

from gtx_stream.config import AggregatorSettings, RetentionSettings
from gtx_stream.core.records import LabelRequest
from gtx_stream.pipeline.aggregate.consumer import GROUP, GroupConsumer
from gtx_stream.pipeline.aggregate.decider import Decider
from gtx_stream.pipeline.aggregate.fairness import FairShare
from gtx_stream.pipeline.aggregate.intake import LabelIntake
from gtx_stream.pipeline.aggregate.labelers import LabelerBook
from gtx_stream.pipeline.aggregate.report import BatchReport
from gtx_stream.pipeline.aggregate.requester import Enqueue, Requester, SentCheck
from gtx_stream.pipeline.aggregate.retention import Retention
from gtx_stream.pipeline.aggregate.sweeper import Sweeper
from gtx_stream.pipeline.aggregate.uncertainty import Ranking, UncertaintySampler
from gtx_stream.pipeline.dispatch import make_dispatcher
from gtx_stream.store import frame_scripts as scripts
from gtx_stream.store.budget_lease import CHUNK_FRAMES, ShardBudget, set_limit
from gtx_stream.store.budget_watch import PoolWatch
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.frames import FrameState, read_frames
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.shards import check_shard_count

log = logging.getLogger(__name__)

__all__ = ["GROUP", "Aggregator", "BatchReport", "Enqueue", "enqueue_rq_jobs", "rq_enqueue",
           "rq_sent"]  # fmt: skip

RECONNECT_FIRST = 0.1  # seconds before the first retry when Redis is unreachable, doubling
RECONNECT_MAX = 2.0


class Aggregator:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: AggregatorSettings,
        consumer: str | None = None,
        lease_seconds: float | None = None,
        enqueue: Enqueue | None = None,
        retention: RetentionSettings | None = None,
        labeler_leases: Mapping[str, float] | None = None,
        queue_client: redis.Redis | None = None,
        sent: SentCheck | None = None,
        defer_confirm: bool = False,
        pool: PoolWatch | None = None,
    ) -> None:
        """``labeler_leases``: labeler id -> its lease (``Settings.labeler_leases()``); the
        others get ``lease_seconds`` (default: ``settings.lease_seconds``). ``queue_client``:
        where requests are enqueued (``redis.queue_url``); default ``client``. ``sent`` and
        ``defer_confirm``: see :class:`Requester` (default, with RQ's enqueue: RQ's jobs
        tell what was sent). ``pool``: on a Redis Cluster, the budget pool's fields as the
        shards of this process read them for their give-backs (``ShardBudget``)."""
        if enqueue is None:
            enqueue, sent = rq_enqueue(), sent or rq_sent()
        self.r = client
        self.keys = keys
        self.s = settings
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = lease_seconds or settings.lease_seconds
        runner = ScriptRunner(client)
        self.runner = runner
        self.group = GroupConsumer(client, keys, self.consumer, settings.batch_size,
                                   settings.claim_idle_seconds)  # fmt: skip
        self.labelers = LabelerBook(client, keys, settings.live_seconds, settings.model)
        backoff = scripts.BackoffPolicy(settings.backoff_after_failures,
                                        settings.backoff_first_seconds,
                                        settings.backoff_max_seconds)  # fmt: skip
        self.intake = LabelIntake(client, keys, runner, backoff)
        self.decider = Decider(settings, keys)
        slots = settings.labeler_slots
        self.fair = FairShare(client, keys, slots) if slots else None
        self.budget = (ShardBudget(client, keys, runner, CHUNK_FRAMES * settings.kappa,
                                   settings.budget_per_source, settings.reserve_per_frame, pool)
                       if keys.cluster else None)  # fmt: skip
        self._dropped = False  # frames whose state expired left the open set in this step
        self.requester = Requester(
            client, keys, runner, self.labelers, make_dispatcher(settings.dispatch, settings.seed),
            enqueue, settings.max_inflight, self.lease_seconds, labeler_leases, self.fair,
            settings.budget_per_source, queue_client, self.budget, sent, defer_confirm,
            settings.unsent_grace_seconds,
        )  # fmt: skip
        self.sweeper = Sweeper.for_aggregator(client, keys, runner, settings, self.labelers)
        self.sampler = (UncertaintySampler(client, keys, settings)
                        if settings.strategy == "uncertainty" else None)  # fmt: skip
        self._last_sweep = 0.0
        self.retention = retention or RetentionSettings()
        self.retainer = Retention(client, keys, runner, self.retention, group=GROUP,
                                  consumer=self.consumer,
                                  claim_idle_seconds=settings.claim_idle_seconds)  # fmt: skip
        self.grace_seconds = self.retainer.grace_seconds

    def setup(self, budget: int | None = None) -> None:
        """Check the pipeline's shard count (stored by the first service that starts; another
        is refused: :class:`~gtx_stream.store.shards.ShardCountError`), create the consumer
        group on both streams, seed ``waiting`` on a Redis from before it (once, before this
        aggregator asks anything: a frame seeded after its ask would wait there with a request
        out) and set the budget limit."""
        check_shard_count(self.r, Keys(self.keys.prefix, shards=self.keys.shards))
        self.group.create_group()
        self.sweeper.seed_waiting()
        set_limit(self.r, self.keys, self.s.budget if budget is None else budget)

    def run(self, stop: threading.Event | None = None) -> None:
        """Process batches until ``stop`` is set (finishing the batch in hand)."""
        stop = stop or threading.Event()
        wait = RECONNECT_FIRST
        while not stop.is_set():
            try:
                self.step()
            except UNAVAILABLE as err:
                # Redis restarting or unreachable: the batch in hand was not acknowledged, so it
                # stays pending and is claimed again once Redis is back (XAUTOCLAIM).
                log.warning("redis unavailable (%s): retrying in %.1f s", err, wait)
                stop.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX)
                continue
            wait = RECONNECT_FIRST

    def step(self, block_ms: int | None = None) -> BatchReport:
        report = BatchReport()
        entries = self.group.read(self.s.block_ms if block_ms is None else block_ms)
        intake = self.intake.take(entries, report)
        touched = intake.touched
        if self.sampler is not None and self._sweep_due():  # strategy 2: the sweep first
            touched |= self._sweep()
        if self.fair is not None:  # frames that waited for a labeler's slot last step
            touched |= self.fair.take_deferred()
        over, budget = False, None
        if self.sampler is not None or touched:
            budget = intake.budget_left if intake.budget_read else self.budget_left()
            if intake.budget_read and self.budget is not None:
                budget = self.budget.combined(budget)  # the shard's lease, and the pool
        if self.sampler is not None and self.sampler.budget_over(budget):
            over = True  # the end of strategy 2: every open frame is finalised now
            touched |= self.sampler.open_frames()
        if touched:
            self._decide(sorted(touched), intake.known, budget, report, over)
        if self.sampler is None and self._sweep_due():
            # after the batch's decisions: the frames it opened or answered are asked or final
            # by now, so the sweep takes (and stamps) only frames that are really waiting
            swept = self._sweep() - touched
            if swept:
                self._decide(sorted(swept), {}, self.budget_left(), report)
        if self.sampler is not None:
            report.asked += self.sampler.pick(self.requester.ask, self._allowed)
        if self.budget is not None:  # a cluster's shard: what it holds and no longer needs
            ended, self._dropped = report.finalised > 0 or self._dropped, False
            self.budget.tend(ended, self.sweeper.budget_seen, self.sweeper.budget_seen_at)
        self.group.ack(entries, progress=report.progress)
        self.retainer.apply_if_due()
        return report

    def _sweep_due(self) -> bool:
        """Every ``sweep_seconds``, and at once while the last sweep left due work."""
        return self.sweeper.backlog or time.time() - self._last_sweep >= self.s.sweep_seconds

    def _sweep(self) -> set[str]:
        """Frames whose lease ran out, and frames due in ``waiting``; requests recorded and
        never enqueued are sent."""
        swept = self.sweeper.expire_leases() | self.sweeper.open_frames()
        self.requester.resend_unsent()
        self._last_sweep = time.time()
        return swept

    def budget_left(self) -> int | None:
        left = scripts.budget_left(*self.r.hmget(self.keys.budget, ["limit", "spent"]))
        return left if self.budget is None else self.budget.combined(left)

    def _decide(
        self,
        frame_ids: Sequence[str],
        known: Mapping[str, FrameState | None],
        budget_left: int | None,
        report: BatchReport,
        budget_over: bool = False,
    ) -> None:
        """``budget_left``: as read by ``apply_labels.lua`` in this step, or just before."""
        states = dict(known)
        states.update(read_frames(self.r, self.keys, [f for f in frame_ids if f not in known]))
        gone = [fid for fid in frame_ids if states.get(fid) is None]
        if gone:
            self.sweeper.drop_gone(gone)
            self._dropped = True
        frames = [f for fid in frame_ids if (f := states.get(fid)) is not None and f.is_open]
        if self.sampler is not None:  # finalised or gone: out of the sampler's sets
            out = [fid for fid in frame_ids if (f := states.get(fid)) is None or not f.is_open]
            if out:
                self.sampler.record(Ranking(), out)
        if not frames:
            return
        params, shares = self.labelers.params(), self._source_budget_left(frames)
        decisions = self.decider.decide(frames, params, budget_left, budget_over, shares)
        if any(rec.reason == "exhausted" for rec in decisions.finals):
            # "nobody left to ask" on parameters up to a second old: a labeler registered since
            # would have been asked (a frame opened just after its only labeler registered
            # ended with no label). Read them again, and decide again if they changed.
            fresh = self.labelers.params(max_age=0.0)
            if fresh != params:
                decisions = self.decider.decide(frames, fresh, budget_left, budget_over, shares)
        # one finalise.lua call for the step's finals (up to 256 frames each)
        calls = scripts.finalise_calls(self.keys, decisions.finals, self.grace_seconds)
        for entry_ids in self.runner.run(calls):
            report.finalised += sum(1 for entry_id in entry_ids if entry_id is not None)
        if self.sampler is not None and decisions.ranking is not None:
            self.sampler.record(decisions.ranking)
        report.asked += self.requester.ask(decisions.slots)

    def _source_budget_left(self, frames: Sequence[FrameState]) -> dict[str, int] | None:
        """Labels each source of ``frames`` may still spend (``aggregator.budget_per_source``)."""
        share = self.s.budget_per_source
        if not share:
            return None
        sources = sorted({f.meta.get("source_id", "") for f in frames})
        if self.budget is not None:  # a cluster's shard: its lease of each share, and the pool
            return self.budget.sources_left(sources)
        spent = self.r.hmget(self.keys.budget, [f"spent:{src}" for src in sources])
        return {src: share - int(x or 0) for src, x in zip(sources, spent, strict=True)}

    def _allowed(self, frame: FrameState) -> list[str]:
        everyone = sorted(self.labelers.params())
        return frame.allowed(everyone) if frame.restricted else everyone


def enqueue_rq_jobs(
    client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease_seconds: float
) -> None:
    from gtx_stream.pipeline.label.requests import enqueue_requests

    enqueue_requests(client, keys, requests, lease_seconds)


def rq_enqueue() -> Enqueue:
    """:func:`enqueue_rq_jobs`, with RQ imported now: the import (about 13 ms of CPU) is paid
    when the aggregator is built, not by the first frame's request."""
    import gtx_stream.pipeline.label.requests  # noqa: F401

    return enqueue_rq_jobs


def rq_sent() -> SentCheck:
    """Whether requests were enqueued: their RQ jobs exist (:func:`~gtx_stream.pipeline.
    label.requests.jobs_exist`)."""
    from gtx_stream.pipeline.label.requests import jobs_exist

    return jobs_exist
