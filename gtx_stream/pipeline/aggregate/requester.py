"""Requests out: pick labelers with the dispatcher, record each request (``ask.lua``) under a
fresh unguessable id, and enqueue the granted ones as RQ jobs. The asks of one step go in
one ``ask.lua`` call (a few Redis calls per ask, the budget, stats and leases once per call).

Each labeler has its own lease (``labeler_leases``; people get longer than machines, see
:meth:`gtx_stream.config.LabelerSettings.lease`); a labeler not named there gets
``lease_seconds``. Requests are enqueued once per distinct lease, which sets their RQ job
timeout."""

from __future__ import annotations

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
from gtx_stream.store.budget_lease import ShardBudget
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner

Enqueue = Callable[[redis.Redis, Keys, Sequence[LabelRequest], float], None]
"""Sends granted requests to the labelers (RQ jobs; tests capture them instead), given the
queue Redis's client."""


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
    ) -> None:
        """``fair``: labelers shared between sources (``aggregator.labeler_slots``);
        ``source_share``: labels one source may spend (``aggregator.budget_per_source``);
        ``queue_client``: the label requests' Redis (``redis.queue_url``; default ``client``),
        the one ``enqueue`` is given; ``budget``: on a Redis Cluster, the shard's lease of
        the budget, topped up before the asks."""
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
        # one ask.lua call for the step's asks (up to 256 each)
        results = [answer for answers in
                   self.runner.run(scripts.ask_calls(self.keys, asks, self.max_inflight,
                                                     self.source_share))
                   for answer in answers]  # fmt: skip
        granted = [req for req, res in zip(requests, results, strict=True) if res == "ok"]
        by_lease: dict[float, list[LabelRequest]] = {}
        for req in granted:
            by_lease.setdefault(self.lease(req.labeler_id), []).append(req)
        for lease, reqs in by_lease.items():
            self.enqueue(self.queue, self.keys, reqs, lease)
        return len(granted)
