"""Label requests as RQ jobs: the enqueue side (the aggregator's).

A request is a job ``label_frame(frame_id, labeler_id, request_id, prefix)``
(:data:`LABEL_FRAME`, :class:`~gtx_stream.core.records.LabelRequest`'s job arguments) on the
queue of one labeler (:meth:`Keys.queue`), with JSON arguments. A labeler worker runs nothing
but that function (:mod:`gtx_stream.pipeline.label.job`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections.abc import Iterable
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from gtx_stream.core.records import LabelRequest
from gtx_stream.store.keys import Keys

__all__ = [
    "FAILURE_TTL",
    "LABEL_FRAME",
    "LabelRequest",  # re-exported: the record the enqueue side takes
    "enqueue_request",
    "enqueue_requests",
    "job_id",
    "job_timeout",
    "jobs_exist",
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


class _RequestJob(Job):
    """The job class of the enqueue side. RQ's enqueue sets a job's status (one ``HSET``) and
    then saves the job (one ``HSET`` of every field, the status among them): the first is
    left out, one command fewer per request."""

    def set_status(self, status: JobStatus, pipeline: Pipeline | None = None) -> None:
        if status == JobStatus.QUEUED and pipeline is not None:
            self._status = status  # written by the save() that follows in the same pipeline
            return
        super().set_status(status, pipeline)


def enqueue_requests(
    client: redis.Redis,
    keys: Keys,
    requests: Iterable[LabelRequest],
    lease_seconds: float,
    pipeline: Pipeline | None = None,
) -> list[Job]:
    """Enqueue many label requests in one round trip (RQ's ``enqueue_many`` per queue).

    The jobs carry ``keys.prefix``, whatever prefix the requests name. With ``pipeline``, the
    jobs are only queued on it and the caller executes it (e.g. together with its own
    writes); without, one pipeline is executed here.
    """
    by_labeler: dict[str, list[Any]] = {}
    for req in requests:
        req = dataclasses.replace(req, prefix=keys.prefix)
        data = Queue.prepare_data(
            LABEL_FRAME,
            args=req.to_job_args(),
            timeout=job_timeout(lease_seconds),
            result_ttl=0,
            failure_ttl=FAILURE_TTL,
            job_id=job_id(keys.prefix, req.request_id),
            description=f"label {req.frame_id} by {req.labeler_id}",
        )
        by_labeler.setdefault(req.labeler_id, []).append(data)
    pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
    jobs: list[Job] = []
    for labeler_id, datas in by_labeler.items():
        queue = Queue(
            keys.queue(labeler_id),
            connection=client,
            serializer=JSONSerializer,
            job_class=_RequestJob,
        )
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


def jobs_exist(client: redis.Redis, keys: Keys, requests: Iterable[LabelRequest]) -> list[bool]:
    """Whether each request has an RQ job on ``client`` (queued, running, or failed and kept),
    one pipelined EXISTS each: how a journal entry's requests that were enqueued just before
    their aggregator stopped are told from those never enqueued (:mod:`gtx_stream.store.unsent`).
    A machine labeler's finished job is gone (``result_ttl`` 0), but its label was applied."""
    pipe = client.pipeline(transaction=False)
    for req in requests:
        pipe.exists(Job.key_for(job_id(keys.prefix, req.request_id)))
    return [bool(n) for n in pipe.execute()]
