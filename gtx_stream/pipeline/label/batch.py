"""Batches: the requests that wait behind the one RQ handed a worker, taken with it.

A labeler with ``batch > 1`` answers up to ``batch`` requests in one RQ job: RQ hands the
worker one job (:func:`~gtx_stream.pipeline.label.job.label_frame`; the aggregator packs up
to ``batch`` requests into one job, :func:`~gtx_stream.pipeline.label.requests.job_args`),
and when that job carries fewer than ``batch`` the worker takes the jobs waiting behind it
from the head of the same queue in one ``LPOP`` (as the label server takes a person's,
:mod:`gtx_stream.server.feed`), reads their job hashes and deletes them: one command for the
batch, one ``HGET`` per job, one ``DEL`` for the batch, instead of RQ's ~63 commands per job on
the worker's side. Of a job that would take the batch past ``batch``, what fits is taken and
the job, rewritten with the rest, goes back to the head of the queue (a request is never in
two jobs). The backend then gets one batch call.

Per-frame accounting stays as it is: each request keeps its own id and its own lease (set by
``ask.lua`` when it was asked), and its label or failure is its own entry on the labels
stream. The batch is formed when the worker is free, from what waits: under load it fills up
to ``batch``; when idle a request is answered alone, with no wait for others. A worker killed
mid-batch loses its requests to their leases, as a killed single request is: the aggregator
asks another labeler when each lease runs out, and a late answer still counts once.

Only plain :func:`label_frame` requests of this labeler and prefix are taken; any other job
found in the queue is dropped with a warning, never run (as RQ's path refuses it,
:class:`~gtx_stream.pipeline.label.job.LabelJob`).
"""

from __future__ import annotations

import json
import logging
import zlib
from typing import Any

import redis
from rq.job import Job
from rq.queue import Queue

from gtx_stream.core.records import LabelRequest, RecordError, text
from gtx_stream.pipeline.label.requests import LABEL_FRAME, job_args, requests_of_job_args
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)


def queue_key(keys: Keys, labeler_id: str) -> str:
    """The Redis list of ``labeler_id``'s RQ queue."""
    return Queue.redis_queue_namespace_prefix + keys.queue(labeler_id)


def take_requests(
    client: redis.Redis, keys: Keys, labeler_id: str, count: int
) -> list[LabelRequest]:
    """Up to ``count`` requests off the head of ``labeler_id``'s queue, their jobs deleted.

    ``LPOP key count`` (a job carries one request or several, :func:`requests_of_job_args`),
    one pipeline of an ``HGET`` per job, then one pipeline that deletes the jobs taken and
    puts back at the head, in order, those past ``count``: of the job that would take the
    batch past it, what fits is taken and the job, rewritten with the rest, goes back.
    """
    if count < 1:
        return []
    queue = queue_key(keys, labeler_id)
    popped = client.lpop(queue, count)
    if not popped:
        return []
    job_ids = [text(j) for j in popped]
    job_keys = [Job.redis_job_namespace_prefix + jid for jid in job_ids]
    with client.pipeline(transaction=False) as pipe:
        for key in job_keys:
            pipe.hget(key, "data")
        datas = pipe.execute()
    out: list[LabelRequest] = []
    taken: list[str] = []
    back: list[str] = []
    rest: tuple[str, list[LabelRequest]] | None = None
    for jid, key, data in zip(job_ids, job_keys, datas, strict=True):
        if back:
            back.append(jid)  # behind one put back: put back too, the order kept
            continue
        if data is None:
            continue  # deleted or expired meanwhile: RQ passes over such ids too
        taken.append(key)
        try:
            reqs = requests_of(data)
        except RecordError as err:
            log.warning("labeler %s: dropping job %s: %s", labeler_id, jid, err)
            continue
        if any(req.labeler_id != labeler_id or req.prefix != keys.prefix for req in reqs):
            log.warning("labeler %s: dropping job %s addressed to %s", labeler_id, jid, reqs[0])
            continue
        room = count - len(out)
        if len(reqs) > room:  # what fits is taken, the job keeps the rest and goes back
            taken.pop()
            back.append(jid)
            out += reqs[:room]
            rest = (key, reqs[room:])
            continue
        out += reqs
    # a job rewritten goes back in one MULTI with its new data: never in the queue with the
    # requests taken from it
    with client.pipeline(transaction=rest is not None) as pipe:
        if taken:
            pipe.delete(*taken)
        if rest is not None:
            key, left = rest
            what = f"label {len(left)} frames by {labeler_id}"
            pipe.hset(key, mapping={"data": job_data(left), "description": what})
        if back:
            pipe.lpush(queue, *reversed(back))
        pipe.execute()
    return out


def job_data(requests: list[LabelRequest]) -> bytes:
    """A job hash's ``data`` for a job carrying ``requests`` (as RQ writes it: zlib of the
    JSON of (function, instance, args, kwargs))."""
    return zlib.compress(json.dumps([LABEL_FRAME, None, job_args(requests), {}]).encode())


def requests_of(data: Any) -> list[LabelRequest]:
    """The requests in a job hash's ``data`` field (RQ: zlib-compressed JSON of (function,
    instance, args, kwargs)); RecordError unless it is a plain :func:`label_frame` call."""
    try:
        raw = data.encode() if isinstance(data, str) else bytes(data)
        func_name, instance, args, kwargs = json.loads(zlib.decompress(raw))
    except (ValueError, TypeError, zlib.error) as err:
        raise RecordError(f"not a JSON job ({type(err).__name__})") from None
    if func_name != LABEL_FRAME or instance is not None or kwargs:
        raise RecordError(f"not a plain label request: {func_name!r:.80}")
    if not isinstance(args, list):
        raise RecordError(f"a label request takes 4 strings, got {args!r:.120}")
    return requests_of_job_args(args)


def request_of(data: Any) -> LabelRequest:
    """The one request of a single-request job (:func:`requests_of`); RecordError otherwise."""
    reqs = requests_of(data)
    if len(reqs) != 1:
        raise RecordError(f"a label request takes 4 strings, got a job of {len(reqs)} requests")
    return reqs[0]
