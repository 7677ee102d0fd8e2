"""Requests out: pick labelers with the dispatcher, record each request (``ask.lua``) under a
fresh unguessable id, and enqueue the granted ones as RQ jobs. The asks of one step go in
one ``ask.lua`` call (a few Redis calls per ask, the budget, stats and leases once per call).

Each labeler has its own lease (``labeler_leases``; people get longer than machines, see
:meth:`gtx_stream.config.LabelerSettings.lease`); a labeler not named there gets
``lease_seconds``. Requests are enqueued once per distinct lease, which sets their RQ job
timeout.

``ask.lua`` also writes what it grants to the ``unsent`` journal, deleted once the requests are
enqueued; the sweep sends what an aggregator stopped before enqueueing
(:mod:`gtx_stream.store.unsent`, :meth:`Requester.resend_unsent`)."""

from __future__ import annotations

import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import redis

from gtx_stream.core.records import LabelRequest
from gtx_stream.pipeline.aggregate.fairness import FairShare
from gtx_stream.pipeline.aggregate.labelers import LabelerBook
from gtx_stream.pipeline.dispatch import Dispatcher, Slot, plan
from gtx_stream.store import frame_scripts as scripts
from gtx_stream.store import unsent
from gtx_stream.store.budget_lease import ShardBudget
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner

Enqueue = Callable[[redis.Redis, Keys, Sequence[LabelRequest], float], None]
"""Sends granted requests to the labelers (RQ jobs; tests capture them instead), given the
queue Redis's client."""

SentCheck = Callable[[redis.Redis, Keys, Sequence[LabelRequest]], list[bool]]
"""Whether each request was sent already (for RQ: it has a job), given the queue Redis's
client: :func:`gtx_stream.pipeline.label.requests.jobs_exist`."""

log = logging.getLogger(__name__)


def new_request_id() -> str:
    """An id nobody can guess: a label is applied only if it brings back its request's id."""
    return secrets.token_urlsafe(16)


class Requester:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        runner: ScriptRunner,
        book: LabelerBook,
        dispatcher: Dispatcher,
        enqueue: Enqueue,
        max_inflight: int,
        lease_seconds: float,
        labeler_leases: Mapping[str, float] | None = None,
        fair: FairShare | None = None,
        source_share: int = 0,
        queue_client: redis.Redis | None = None,
        budget: ShardBudget | None = None,
        sent: SentCheck | None = None,
        defer_confirm: bool = False,
        unsent_grace: float = unsent.GRACE_SECONDS,
    ) -> None:
        """``fair``: labelers shared between sources (``aggregator.labeler_slots``);
        ``source_share``: labels one source may spend (``aggregator.budget_per_source``);
        ``queue_client``: the label requests' Redis (``redis.queue_url``; default ``client``),
        the one ``enqueue`` is given; ``budget``: on a Redis Cluster, the shard's lease of
        the budget, topped up before the asks; ``sent``: how :meth:`resend_unsent` tells a
        request enqueued from one never enqueued (None: every unanswered one is sent again);
        ``defer_confirm``: ``enqueue`` only holds the requests, and the caller sends them and
        then calls :meth:`confirm_sent` (a sharded aggregator's round); ``unsent_grace``:
        how old a journal entry must be before :meth:`resend_unsent` sends it
        (``aggregator.unsent_grace_seconds``)."""
        self.r = client
        self.queue = queue_client if queue_client is not None else client
        self.keys = keys
        self.runner = runner
        self.book = book
        self.dispatcher = dispatcher
        self.enqueue = enqueue
        self.max_inflight = max_inflight
        self.lease_seconds = lease_seconds
        self.labeler_leases = dict(labeler_leases or {})
        self.fair = fair
        self.source_share = source_share
        self.budget = budget
        self.sent = sent
        self.defer_confirm = defer_confirm
        self.unsent_grace = unsent_grace
        self.enqueued: list[str] = []
        """Journal tokens of requests handed to ``enqueue`` and not yet confirmed."""

    def lease(self, labeler_id: str) -> float:
        """Seconds ``labeler_id`` has to answer a request."""
        return self.labeler_leases.get(labeler_id, self.lease_seconds)

    def ask(self, slots: Sequence[Slot]) -> int:
        """Ask one more labeler (up to each slot's room) about each frame; how many were."""
        if not slots:
            return 0
        fair = self.fair
        pool = self.book.pool(with_load=self.dispatcher.needs_load or fair is not None)
        if fair is not None:
            wanted = slots
            slots = fair.select(wanted, fair.free(pool))
        picks = plan(self.dispatcher, slots, pool, cap=fair.slots if fair else 0)
        if fair is not None:  # chosen, but no free labeler may take it: next step
            fair.deferred |= {s.frame.frame_id for s in slots} - {fid for fid, _ in picks}
        if not picks:
            return 0  # eligible labelers exist but none is running (or all are backed off)
        n_labels = {slot.frame.frame_id: slot.frame.n_labels for slot in slots}
        now = time.time()
        requests = [
            LabelRequest(lab, fid, new_request_id(), self.keys.prefix) for fid, lab in picks
        ]
        asks = [scripts.Ask(req.frame_id, req.labeler_id, req.request_id,
                            n_labels[req.frame_id], now + self.lease(req.labeler_id))
                for req in requests]  # fmt: skip
        if self.budget is not None:
            self.budget.cover(len(asks))
            if self.source_share:
                sources = {s.frame.frame_id: s.frame.meta.get("source_id", "") for s in slots}
                self.budget.cover_sources(Counter(sources[a.frame_id] for a in asks))
        # one ask.lua call for the step's asks (up to 256 each), each with a journal token
        tokens = [unsent.new_token() for _ in range(scripts.calls_needed(len(asks)))]
        calls = scripts.ask_calls(self.keys, asks, self.max_inflight, self.source_share,
                                  tokens, now)  # fmt: skip
        answers = self.runner.run(calls)
        results = [answer for call_answers in answers for answer in call_answers]
        granted = [req for req, res in zip(requests, results, strict=True) if res == "ok"]
        written = [t for t, call_answers in zip(tokens, answers, strict=True)
                   if "ok" in call_answers]  # fmt: skip
        self._send(granted, written)
        return len(granted)

    def _send(self, requests: Sequence[LabelRequest], tokens: Sequence[str]) -> None:
        """Enqueue ``requests`` (one call per distinct lease), then delete their journal
        ``tokens`` (or leave that to the caller: ``defer_confirm``). An enqueue that raises
        leaves the tokens in the journal, for a later sweep."""
        by_lease: dict[float, list[LabelRequest]] = {}
        for req in requests:
            by_lease.setdefault(self.lease(req.labeler_id), []).append(req)
        for lease, reqs in by_lease.items():
            self.enqueue(self.queue, self.keys, reqs, lease)
        self.enqueued.extend(tokens)
        if not self.defer_confirm:
            self.confirm_sent()

    def confirm_sent(self) -> None:
        """Delete the journal entries of the requests enqueued since the last call (one HDEL)."""
        tokens, self.enqueued = self.enqueued, []
        unsent.forget(self.r, self.keys, tokens)

    def resend_unsent(self, now: float | None = None) -> int:
        """Send the requests of journal entries older than ``unsent_grace`` seconds (an
        aggregator stopped, or its enqueue failed, between ``ask.lua`` and the enqueue) that
        are still unanswered on open frames and not sent already, under their own request
        ids; delete those entries. One HGETALL when there is nothing to do; how many were
        sent."""
        now = time.time() if now is None else now
        entries = [
            e
            for e in unsent.read(self.r, self.keys)
            if e.at <= now - self.unsent_grace and e.token not in self.enqueued
        ]
        if not entries:
            return 0
        reqs = unsent.unanswered(self.r, self.keys, [r for e in entries for r in e.requests])
        if reqs and self.sent is not None:
            reqs = [r for r, was in zip(reqs, self.sent(self.queue, self.keys, reqs),
                                        strict=True) if not was]  # fmt: skip
        if reqs:
            log.warning("sending %d label requests recorded %.0f s ago or more and never "
                        "enqueued (an aggregator stopped, or its enqueue failed, in between)",
                        len(reqs), self.unsent_grace)  # fmt: skip
        self._send(reqs, [e.token for e in entries])
        return len(reqs)
