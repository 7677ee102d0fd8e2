"""Label requests as RQ jobs: the enqueue side (the aggregator's).

A request is a job ``label_frame(frame_id, labeler_id, request_id, prefix)``
(:data:`LABEL_FRAME`, :class:`~gtx_stream.core.records.LabelRequest`'s job arguments) on the
queue of one labeler (:meth:`Keys.queue`), with JSON arguments. A labeler worker runs nothing
but that function (:mod:`gtx_stream.pipeline.label.job`).

For a labeler that takes batches (``batch > 1``), the requests of one enqueue go in jobs of
up to ``batch`` requests each: ``label_frame(frame_id, labeler_id, request_id, prefix,
frame_id_2, request_id_2, ...)`` (:func:`job_args`, :func:`requests_of_job_args`), so that
RQ's cost per job (about 3 commands to enqueue one, some 60 for a worker to run one) is paid
once per batch. Each request keeps its own id, lease and labels-stream entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from gtx_stream.core.records import LabelRequest, RecordError
from gtx_stream.store.keys import Keys

__all__ = [
    "FAILURE_TTL",
    "LABEL_FRAME",
    "LabelRequest",  # re-exported: the record the enqueue side takes
    "enqueue_request",
    "enqueue_requests",
    "job_args",
    "job_id",
    "job_timeout",
    "requests_of_job_args",
]

LABEL_FRAME = "gtx_stream.pipeline.label.job.label_frame"
"""The only function a labeler worker runs (a test checks it names :func:`job.label_frame`)."""

FAILURE_TTL = 86400
"""Seconds RQ keeps a failed request in its failed-job registry (for ``rq info``, requeue)."""


def job_id(prefix: str, request_id: str) -> str:
    """The RQ job id of a request: readable, and unique across prefixes sharing one Redis.

    RQ takes only ``[A-Za-z0-9_-]`` in job ids, while request and labeler ids may hold
    ``.:@``; those become ``_``, and a hash of (prefix, request id) keeps distinct requests
    apart. The request id itself travels in the job's arguments and on the labels stream.
    """
    digest = hashlib.blake2b(f"{prefix}\0{request_id}".encode(), digest_size=8).hexdigest()
    return _NOT_IN_JOB_ID.sub("_", f"{prefix}-{request_id}")[:160] + "-" + digest


_NOT_IN_JOB_ID = re.compile(r"[^A-Za-z0-9_-]")


def job_timeout(lease_seconds: float) -> int:
    """RQ's job timeout for a request: whole seconds, at least the lease.

    A job may run as long as its lease, after which another labeler is asked anyway.
    """
    return max(1, math.ceil(lease_seconds))


def job_args(requests: Sequence[LabelRequest]) -> list[str]:
    """The arguments of one job carrying ``requests`` (one labeler's, one prefix): the first
    request's four, then ``frame_id, request_id`` of each further one."""
    first = requests[0]
    args = first.to_job_args()
    for req in requests[1:]:
        if (req.labeler_id, req.prefix) != (first.labeler_id, first.prefix):
            raise ValueError(f"one job takes one labeler's requests: {req} with {first}")
        args += [req.frame_id, req.request_id]
    return args


def requests_of_job_args(args: Sequence[Any]) -> list[LabelRequest]:
    """The requests a job's arguments carry (:func:`job_args`); RecordError when malformed."""
    if len(args) < 4 or len(args) % 2 or not all(isinstance(a, str) and a for a in args):
        raise RecordError(
            "a label request takes 4 strings (then 2 per further request of a batch), "
            f"got {args!r:.120}"
        )
    first = LabelRequest.from_job_args(list(args[:4]))
    return [first] + [LabelRequest(first.labeler_id, args[i], args[i + 1], first.prefix)
                      for i in range(4, len(args), 2)]  # fmt: skip


def enqueue_requests(
    client: redis.Redis,
    keys: Keys,
    requests: Iterable[LabelRequest],
    lease_seconds: float,
    pipeline: Pipeline | None = None,
    batches: Mapping[str, int] | None = None,
) -> list[Job]:
    """Enqueue many label requests in one round trip (RQ's ``enqueue_many`` per queue).

    ``batches``: labeler id -> its ``batch``; a labeler's requests go in jobs of up to that
    many requests (:func:`job_args`), in order; a labeler not named gets one job per request.
    The jobs carry ``keys.prefix``, whatever prefix the requests name. With ``pipeline``, the
    jobs are only queued on it and the caller executes it (e.g. together with its own
    writes); without, one pipeline is executed here.
    """
    by_labeler: dict[str, list[LabelRequest]] = {}
    for req in requests:
        req = dataclasses.replace(req, prefix=keys.prefix)
        by_labeler.setdefault(req.labeler_id, []).append(req)
    pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
    jobs: list[Job] = []
    for labeler_id, reqs in by_labeler.items():
        size = max(1, (batches or {}).get(labeler_id, 1))
        datas = []
        for i in range(0, len(reqs), size):
            part = reqs[i : i + size]
            first = part[0]
            what = (
                first.frame_id if len(part) == 1 else f"{len(part)} frames ({first.frame_id}, ...)"
            )
            datas.append(Queue.prepare_data(
                LABEL_FRAME,
                args=job_args(part),
                timeout=job_timeout(lease_seconds),
                result_ttl=0,
                failure_ttl=FAILURE_TTL,
                job_id=job_id(keys.prefix, first.request_id),
                description=f"label {what} by {labeler_id}",
            ))  # fmt: skip
        queue = Queue(keys.queue(labeler_id), connection=client, serializer=JSONSerializer)
        jobs.extend(queue.enqueue_many(datas, pipeline=pipe))
    if pipeline is None:
        pipe.execute()
    return jobs


def enqueue_request(
    client: redis.Redis,
    keys: Keys,
    labeler_id: str,
    frame_id: str,
    request_id: str,
    lease_seconds: float,
    pipeline: Pipeline | None = None,
) -> Job:
    """Enqueue one label request on ``labeler_id``'s queue (job id: :func:`job_id`)."""
    req = LabelRequest(labeler_id, frame_id, request_id, keys.prefix)
    return enqueue_requests(client, keys, [req], lease_seconds, pipeline)[0]
