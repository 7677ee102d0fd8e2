"""A person's feed: the requests the aggregator addressed to them, taken from their RQ queue.

No RQ worker serves a ``human`` labeler. Its requests wait on its queue like anyone's
(:func:`gtx_stream.pipeline.label.requests.enqueue_requests`); the label server pops them
(``LPOP rq:queue:<keys.queue(id)>``), reads each job's JSON arguments
(:meth:`LabelRequest.from_job_args`), deletes the job, and holds the request in the person's
hand (:mod:`gtx_stream.store.people`) until they answer or skip it. A request whose frame is no
longer open, or whose request the frame no longer waits for (finalised, answered, failed),
is dropped and the next one taken. A job taken and not yet held when the server dies is lost
to its lease: the sweeper asks someone else.

Gold frames (:mod:`gtx_stream.store.gold`, when present) are slipped into the hand by the gold
book's ``draw``; the page cannot tell them apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from gtx_stream.core.records import LabelRequest, RecordError, RequestState, text
from gtx_stream.pipeline.label.requests import LABEL_FRAME
from gtx_stream.server.state import ServerState
from gtx_stream.store import people
from gtx_stream.store.keys import Keys
from gtx_stream.store.people import HandItem

log = logging.getLogger(__name__)

RQ_QUEUE = "rq:queue:"
RQ_JOB = "rq:job:"


WAITING_CHECKED = 50
"""Queued requests :meth:`Feed.waiting` checks one by one (an HGETALL of the job, and its
frame's state); past them the queue's length is counted as it is. Every request checked cost
about 0.3 ms of the server's time: with 500 queued, /api/progress took 185 ms
(BENCHMARKS.md, "/api/progress")."""


class GoldFeed(Protocol):
    """What the feed needs of the gold book (store/gold.py)."""

    def draw(self, person: str) -> str | None:
        """The id of a gold frame to hand ``person`` next, or None for a real request."""

    def image(self, gold_id: str) -> bytes | None: ...

    def answer(self, person: str, gold_id: str, label: int) -> bool:
        """Record the answer; whether it counted now (not a duplicate, not an unknown item)."""

    def paused(self, person: str) -> bool: ...


@dataclass(frozen=True)
class Held:
    token: str
    item: HandItem
    raw: str


class Feed:
    def __init__(self, state: ServerState, gold: GoldFeed | None = None) -> None:
        self.state = state
        self.r = state.client
        # the person's RQ queue and jobs: on redis.queue_url's Redis when there is one
        self.q = state.queue if state.queue is not None else state.client
        self.size = 1 + state.settings.label_server.prefetch
        self.gold = gold
        self._warned_lrange = False

    @property
    def keys(self) -> Keys:
        return self.state.keys

    def queue_key(self, person: str) -> str:
        return RQ_QUEUE + self.keys.queue(person)

    def current(self, person: str) -> list[Held]:
        """What the person holds, oldest first (the first is on screen), refilled up to
        ``1 + prefetch`` from gold and their queue; requests no longer wanted are dropped."""
        held = [Held(t, item, raw) for t, item, raw in people.hand(self.r, self.keys, person)]
        if self.gold is not None and self.gold.paused(person):
            # paused: their labels count no more; what they hold (prefetched gold included) goes
            if held:
                people.drop(self.r, self.keys, person, [(h.token, h.item) for h in held])
            return []
        stale = self._stale(person, [h for h in held if h.item.kind == "request"])
        if stale:
            people.drop(self.r, self.keys, person, [(h.token, h.item) for h in stale])
            held = [h for h in held if h not in stale]
        room = self.size - len(held)
        if room > 0:
            held += self._take(person, room, held)
        return held

    def _stale(self, person: str, held: Sequence[Held]) -> list[Held]:
        requests = [LabelRequest(person, h.item.frame_id, h.item.request_id, self.keys.prefix)
                    for h in held]  # fmt: skip
        return [h for h, asked in zip(held, self._asked(person, requests), strict=True)
                if not asked]  # fmt: skip

    def _take(self, person: str, room: int, held: Sequence[Held]) -> list[Held]:
        items: list[HandItem] = []
        now = time.time()
        paused = self.gold is not None and self.gold.paused(person)
        if self.gold is not None and not paused:
            holding = {h.item.gold_id for h in held if h.item.kind == "gold"}
            for _ in range(room):
                gold_id = self.gold.draw(person)
                if gold_id is None or gold_id in holding:
                    break  # a real request next (or none: a paused person gets nothing)
                holding.add(gold_id)
                items.append(HandItem("gold", gold_id=gold_id, taken_at=now))
        if not paused:  # a paused person is handed nothing (gtx-stream gold reset ID)
            items += self._pop_requests(person, room - len(items), now)
        tokens = people.hold(self.r, self.keys, person, items)
        taken = [Held(t, item, item.encode()) for t, item in zip(tokens, items, strict=True)]
        # in the order people.hand reads them back (taken_at, then token), so that a reload
        # shows the frame this reply puts on screen
        return sorted(taken, key=lambda h: (h.item.taken_at, h.token))

    def _pop_requests(self, person: str, room: int, now: float) -> list[HandItem]:
        """Up to ``room`` requests still wanted, popped from the person's queue."""
        out: list[HandItem] = []
        while len(out) < room:
            popped = self.q.lpop(self.queue_key(person), room - len(out))
            if not popped:
                break
            job_ids = [text(j) for j in popped]
            with self.q.pipeline(transaction=False) as pipe:
                for jid in job_ids:
                    pipe.hgetall(RQ_JOB + jid)
                for jid in job_ids:
                    pipe.delete(RQ_JOB + jid)
                raws = pipe.execute()[: len(job_ids)]
            requests = [r for jid, raw in zip(job_ids, raws, strict=True)
                        if (r := self._request(person, jid, raw)) is not None]  # fmt: skip
            wanted = self._wanted(person, requests)
            out += [HandItem("request", r.frame_id, r.request_id, taken_at=now) for r in wanted]
        return out

    def _request(
        self, person: str, job_id: str, raw: dict[Any, Any], quiet: bool = False
    ) -> LabelRequest | None:
        if not raw:
            return None  # the job expired or was deleted
        job = Job(job_id, connection=self.q, serializer=JSONSerializer)
        try:
            job.restore(raw)
            if job.func_name != LABEL_FRAME:
                raise RecordError(f"not a label request: {job.func_name!r}")
            req = LabelRequest.from_job_args(job.args)
        except Exception as err:  # anything in the queue that is not a request is dropped
            if not quiet:
                log.warning("person %s: dropping job %s: %s", person, job_id, err)
            return None
        if req.labeler_id != person or req.prefix != self.keys.prefix:
            if not quiet:
                log.warning("person %s: dropping job %s addressed to %s", person, job_id, req)
            return None
        return req

    def _asked(self, person: str, requests: Sequence[LabelRequest]) -> list[bool]:
        """Whether each request's frame still waits for it (:func:`_still_asked`)."""
        if not requests:
            return []
        with self.r.pipeline(transaction=False) as pipe:
            for req in requests:
                pipe.hget(self.keys.frame(req.frame_id), "state")
                pipe.hget(self.keys.frame_requests(req.frame_id), person)
            replies = pipe.execute()
        return [_still_asked(replies[2 * i], replies[2 * i + 1], req.request_id)
                for i, req in enumerate(requests)]  # fmt: skip

    def _wanted(self, person: str, requests: list[LabelRequest]) -> list[LabelRequest]:
        wanted = []
        for req, asked in zip(requests, self._asked(person, requests), strict=True):
            if asked:
                wanted.append(req)
            else:
                log.info("person %s: frame %s no longer needs them, dropped", person, req.frame_id)
        return wanted

    def waiting(self, person: str) -> int:
        """What the person could still be handed: what they hold, and the requests on their
        queue, less requests whose frames no longer wait for them (a lease ran out and the
        frame was decided, say: their jobs stay queued until popped and dropped). Read only:
        the queue and the hand are left as they are. Nothing for a paused person. Only the
        first :data:`WAITING_CHECKED` queued requests are checked; those after them are
        counted as they are (LLEN), so a poll costs the same however long the queue."""
        if self.gold is not None and self.gold.paused(person):
            return 0
        held = [h for _, h, _ in people.hand(self.r, self.keys, person)]
        held_requests = [LabelRequest(person, h.frame_id, h.request_id, self.keys.prefix)
                         for h in held if h.kind == "request"]  # fmt: skip
        gold = sum(h.kind == "gold" for h in held)
        try:
            job_ids = [
                text(j) for j in self.q.lrange(self.queue_key(person), 0, WAITING_CHECKED - 1)
            ]
        except redis.exceptions.NoPermissionError as err:
            # an ACL file from before the label server read its people's queues
            # (docs/access.md): their length, jobs of decided frames included
            if not self._warned_lrange:
                log.warning("cannot read people's queues (%s): 'waiting' counts every job on "
                            "them; give the label server +lrange on them", err)  # fmt: skip
                self._warned_lrange = True
            return gold + sum(self._asked(person, held_requests)) + self._queued(person)
        with self.q.pipeline(transaction=False) as pipe:
            for jid in job_ids:
                pipe.hgetall(RQ_JOB + jid)
            raws = pipe.execute() if job_ids else []
        queued = [r for jid, raw in zip(job_ids, raws, strict=True)
                  if (r := self._request(person, jid, raw, quiet=True)) is not None]  # fmt: skip
        beyond = self._queued(person) - len(job_ids) if len(job_ids) == WAITING_CHECKED else 0
        return gold + sum(self._asked(person, held_requests + queued)) + beyond

    def _queued(self, person: str) -> int:
        return int(self.q.llen(self.queue_key(person)))

    def image(self, item: HandItem) -> bytes | None:
        if item.kind == "gold":
            return self.gold.image(item.gold_id) if self.gold is not None else None
        jpeg = self.r.get(self.keys.image(item.frame_id))
        return jpeg if isinstance(jpeg, bytes) else None


def _still_asked(state: Any, request: Any, request_id: str) -> bool:
    """The frame is open and waits for this request (outstanding, or late: still counted)."""
    if state is None or text(state) != "open" or request is None:
        return False
    try:
        req = RequestState.decode(text(request))
    except RecordError:
        return False
    return req.state in ("out", "late") and req.ref == request_id


def is_live_request(client: redis.Redis, state: ServerState, person: str, item: HandItem) -> bool:
    """One held request, checked now (before its answer is sent)."""
    keys = state.keys
    with client.pipeline(transaction=False) as pipe:
        pipe.hget(keys.frame(item.frame_id), "state")
        pipe.hget(keys.frame_requests(item.frame_id), person)
        st, req = pipe.execute()
    return _still_asked(st, req, item.request_id)
