"""The journal of requests recorded but not yet enqueued (``<prefix>:unsent``, per shard).

A request is granted by ``ask.lua`` on the state Redis (its label of budget reserved, the
labeler marked asked for the frame) and then enqueued as an RQ job on the queue Redis: two
steps that no transaction spans (``redis.queue_url`` may be another server). An aggregator
killed between them, or an enqueue refused by a queue Redis that is down, would leave a request
paid for that no labeler ever sees: its lease runs out, the labeler cannot be asked about the
frame again, and the label of budget stays reserved for a label that cannot come.

So ``ask.lua`` writes the requests it grants to this hash, under a token of the call, in the
same atomic step; the aggregator deletes the token once the jobs are enqueued
(:meth:`~gtx_stream.pipeline.aggregate.requester.Requester.confirm_sent`). A token still there
:data:`GRACE_SECONDS` later is a call whose enqueue never happened, or happened just before its
aggregator stopped: the sweep (:meth:`~gtx_stream.pipeline.aggregate.requester.Requester.
resend_unsent`) enqueues again each of its requests that is still unanswered on an open frame
and has no RQ job, under the same request id, so that its label is applied once whichever copy
brings it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from gtx_stream.core.records import LabelRequest, RecordError, RequestState, text
from gtx_stream.store.keys import Keys

GRACE_SECONDS = 30.0
"""How old a journal entry must be before a sweep sends its requests, by default
(``aggregator.unsent_grace_seconds``). An aggregator takes
milliseconds from ``ask.lua`` to the enqueue and the delete, so an entry this old was not
enqueued by a live step. Two cases send a second copy, whose label is still applied once and
counted once against the budget (the labeler does the work twice): a step stalled longer than
this, then going on; and an aggregator killed in the instant between its enqueue and the
delete, whose request's job already finished (gone from RQ) while its label had not been
applied 30 s later."""


def new_token() -> str:
    """A journal token, unique to one ``ask.lua`` call."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Entry:
    """One ``ask.lua`` call's granted requests, as the journal holds them."""

    token: str
    at: float
    """Unix seconds of the call."""
    requests: tuple[LabelRequest, ...]


def read(client: redis.Redis, keys: Keys) -> list[Entry]:
    """Every entry of ``keys``'s journal (one HGETALL), oldest first. An entry that cannot be
    read (not JSON) is returned with no requests, so that it is deleted."""
    entries = []
    for token, raw in client.hgetall(keys.unsent).items():
        try:
            value = json.loads(raw)
            at = float(value["t"])
            reqs = tuple(LabelRequest(str(lab), str(fid), str(rid), keys.prefix)
                         for fid, lab, rid in (value["r"] or []))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            at, reqs = 0.0, ()
        entries.append(Entry(text(token), at, reqs))
    return sorted(entries, key=lambda e: e.at)


def unanswered(
    client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest]
) -> list[LabelRequest]:
    """Those of ``requests`` still outstanding or late (``out:`` or ``late:`` with their own
    id) on a frame that is still open: the ones whose label can still count."""
    pipe = client.pipeline(transaction=False)
    for req in requests:
        pipe.hget(keys.frame_requests(req.frame_id), req.labeler_id)
        pipe.hget(keys.frame(req.frame_id), "state")
    replies = pipe.execute()
    keep = []
    for i, req in enumerate(requests):
        state, frame = replies[2 * i], replies[2 * i + 1]
        if frame is None or text(frame) != "open" or state is None:
            continue
        try:
            stored = RequestState.decode(text(state))
        except RecordError:
            continue
        if stored.state in ("out", "late") and stored.ref == req.request_id:
            keep.append(req)
    return keep


def forget(client: redis.Redis, keys: Keys, tokens: Sequence[str]) -> None:
    """Delete ``tokens`` from the journal (their requests were enqueued, or need not be)."""
    if tokens:
        client.hdel(keys.unsent, *tokens)
