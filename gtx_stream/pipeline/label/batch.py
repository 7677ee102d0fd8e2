"""Batches: the requests that wait behind the one RQ handed a worker, taken with it.

A labeler with ``batch > 1`` answers up to ``batch`` requests in one backend call: RQ hands the
worker one job (:func:`~gtx_stream.pipeline.label.job.label_frame`), which takes up to
``batch - 1`` more requests from the head of the same queue in one ``LPOP`` (as the label
server takes a person's, :mod:`gtx_stream.server.feed`), reads their job hashes and deletes
them: one command for the batch, one ``HGET`` per request, one ``DEL`` for the batch, instead
of RQ's ~58 commands per job on the worker's side. The backend then gets one batch call.
The same RQ job then goes on with the next batch while requests keep coming (a *session*,
:data:`~gtx_stream.pipeline.label.job.SESSION_SECONDS`), so RQ's bookkeeping is paid once
per session rather than once per batch.

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
from typing import Any, cast

import redis
from rq.job import Job
from rq.queue import Queue

from gtx_stream.core.records import LabelRequest, RecordError, text
from gtx_stream.pipeline.label.requests import LABEL_FRAME
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)


def queue_key(keys: Keys, labeler_id: str) -> str:
    """The Redis list of ``labeler_id``'s RQ queue."""
    return Queue.redis_queue_namespace_prefix + keys.queue(labeler_id)


def take_requests(
    client: redis.Redis, keys: Keys, labeler_id: str, count: int, wait: float = 0.0
) -> list[LabelRequest]:
    """Up to ``count`` requests off the head of ``labeler_id``'s queue, their jobs deleted.

    Three round trips' worth of commands, whatever ``count``: ``LPOP key count``, then one
    pipeline of an ``HGET`` per job and one ``DEL`` of them all. With ``wait`` (seconds) and
    an empty queue, a ``BLPOP`` waits that long for a first request (then an ``LPOP`` takes
    those behind it).
    """
    if count < 1:
        return []
    key = queue_key(keys, labeler_id)
    popped = client.lpop(key, count)
    if not popped and wait > 0:
        first = client.blpop([key], timeout=wait)
        if first:
            more = cast(list[bytes | str], client.lpop(key, count - 1) or []) if count > 1 else []
            popped = [cast(bytes | str, first[1]), *more]
    if not popped:
        return []
    job_ids = [text(j) for j in popped]
    job_keys = [Job.redis_job_namespace_prefix + jid for jid in job_ids]
    with client.pipeline(transaction=False) as pipe:
        for key in job_keys:
            pipe.hget(key, "data")
        pipe.delete(*job_keys)
        datas = pipe.execute()[:-1]
    out = []
    for jid, data in zip(job_ids, datas, strict=True):
        if data is None:
            continue  # deleted or expired meanwhile: RQ passes over such ids too
        try:
            req = request_of(data)
        except RecordError as err:
            log.warning("labeler %s: dropping job %s: %s", labeler_id, jid, err)
            continue
        if req.labeler_id != labeler_id or req.prefix != keys.prefix:
            log.warning("labeler %s: dropping job %s addressed to %s", labeler_id, jid, req)
            continue
        out.append(req)
    return out


def request_of(data: Any) -> LabelRequest:
    """The request in a job hash's ``data`` field (RQ: zlib-compressed JSON of (function,
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
    return LabelRequest.from_job_args(args)
