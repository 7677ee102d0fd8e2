"""The RQ job of a request: :func:`label_frame`, and :class:`LabelJob`, which runs nothing else.

``label_frame`` reads the frame, asks the labeler's backend, and XADDs one
:class:`~gtx_stream.core.records.LabelEntry` to the labels stream: the label, or, when the
request failed (a backend error, the backend's own timeout or RQ's job timeout, a garbage
answer), a failed entry with the reason, at once, so the aggregator need not wait out the
lease. A failed request also fails its RQ job (RQ keeps it in its failed-job registry). The job
decides nothing: the aggregator applies the entry.

While Redis is unreachable (a restart), reading the frame and sending the entry are retried
with backoff until Redis answers, or until the worker is asked to stop: then the request is
left to its lease (:class:`RequestAbandoned`).

Job payloads are JSON (RQ's ``JSONSerializer``), and a labeler worker runs nothing but
:func:`label_frame`: a job that names another function, an instance, callbacks or webhooks is
failed without running them, so writing into the queue does not give code execution.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from rq.job import Job, JobStatus, get_current_job
from rq.timeouts import JobTimeoutException

from gtx_stream.config import ConfigError, LabelerSettings, Settings
from gtx_stream.core.records import LabelEntry, text
from gtx_stream.pipeline.label.backends import (
    Backend,
    Frame,
    LabelError,
    build_backend,
    check_label,
)
from gtx_stream.pipeline.label.requests import LABEL_FRAME
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTAGE_WAIT_FIRST = 0.1
"""Seconds before the first retry while Redis is unreachable; doubles up to OUTAGE_WAIT_MAX."""
OUTAGE_WAIT_MAX = 2.0


class RequestAbandoned(Exception):
    """Asked to stop while Redis was unreachable: the request is left to its lease."""


@dataclass
class WorkerContext:
    """What the job function needs, set once when the worker process starts."""

    client: redis.Redis
    backends: dict[str, Backend] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    build: Callable[[str], Backend] | None = None
    """Builds a backend not in ``backends`` (a plain ``rq worker``); None: refuse it."""

    def backend(self, labeler_id: str) -> Backend:
        found = self.backends.get(labeler_id)
        if found is None and self.build is not None:
            found = self.backends[labeler_id] = self.build(labeler_id)
        if found is None:
            served = ", ".join(sorted(self.backends)) or "none"
            raise LabelError(f"this worker does not serve labeler {labeler_id} (serves {served})")
        return found


_context: WorkerContext | None = None
_fallback: WorkerContext | None = None


def set_context(context: WorkerContext | None) -> None:
    """Install (or with None, remove) the context :func:`label_frame` uses in this process."""
    global _context
    _context = context


def labeler_settings(settings: Settings, labeler_id: str) -> LabelerSettings:
    """The ``[[labelers]]`` entry of ``labeler_id``; ConfigError naming the known ones."""
    for lab in settings.labelers:
        if lab.id == labeler_id:
            return lab
    known = ", ".join(lab.id for lab in settings.labelers) or "none configured"
    raise ConfigError(f"config error: labeler {labeler_id!r} is not in labelers (known: {known})")


def _runtime() -> WorkerContext:
    if _context is not None:
        return _context
    # Run by a plain ``rq worker``: build each labeler from the settings, once per process.
    global _fallback
    if _fallback is None:
        job = get_current_job()
        if job is None:
            raise LabelError("label_frame runs inside a labeler worker (no worker context, no job)")
        from gtx_stream.config import load_settings

        settings = load_settings()
        _fallback = WorkerContext(
            job.connection, build=lambda lid: build_backend(labeler_settings(settings, lid))
        )
    return _fallback


def ride_out(call: Callable[[], T], what: str, stop: threading.Event) -> T:
    """``call()``, retried with backoff while Redis is unreachable, until it answers.

    Raises :class:`RequestAbandoned` once ``stop`` is set during an outage.
    """
    wait = OUTAGE_WAIT_FIRST
    since: float | None = None
    while True:
        try:
            result = call()
        except (redis.ConnectionError, redis.TimeoutError) as err:
            if since is None:
                since = time.monotonic()
                log.warning("redis unreachable (%s): retrying %s until it is back", err, what)
            if stop.wait(wait):
                message = f"stopped while Redis was unreachable: {what} is left to its lease"
                log.warning("%s", message)
                raise RequestAbandoned(message) from err
            wait = min(2 * wait, OUTAGE_WAIT_MAX)
            continue
        if since is not None:
            log.info("redis is back after %.1f s: %s done", time.monotonic() - since, what)
        return result


def read_frame(client: redis.Redis, keys: Keys, frame_id: str) -> Frame | None:
    """The frame hash and JPEG, or None when the frame is gone (not open, or expired)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.frame(frame_id))
        pipe.get(keys.image(frame_id))
        raw, jpeg = pipe.execute()
    if not raw:
        return None
    metadata = {text(k): text(v) for k, v in raw.items()}
    if metadata.get("state", "open") != "open":  # finalised (or dropped): no label is needed
        return None
    if isinstance(jpeg, str):  # a client with decode_responses=True cannot carry JPEG bytes
        raise LabelError("the labeler's Redis client must not decode responses")
    return Frame(frame_id, metadata, jpeg)


def _reason(err: Exception, where: str) -> str:
    """Why a request failed, one line naming the labeler and the frame."""
    if isinstance(err, LabelError):
        return str(err)
    if isinstance(err, JobTimeoutException):  # RQ's job timeout: the lease, in whole seconds
        job = get_current_job()
        limit = f" ({job.timeout} s)" if job is not None and job.timeout else ""
        return f"{where}: no label within the job timeout{limit}"
    return f"{where}: {type(err).__name__}: {err}"  # a bug in a backend fails a request too


def _send(ctx: WorkerContext, keys: Keys, entry: LabelEntry) -> None:
    what = f"{'failure' if entry.failed else 'label'} of request {entry.request_id}"
    fields: dict[Any, Any] = entry.to_fields()
    while True:
        try:
            ride_out(lambda: ctx.client.xadd(keys.labels, fields), what, ctx.stop)
            return
        except JobTimeoutException:
            # RQ's job timeout bounds the backend's work; this answer is in hand, so it is sent
            # anyway (late, it still counts once if the frame is open)
            log.warning("job timeout while sending the %s: still sending it", what)


def label_frame(frame_id: str, labeler_id: str, request_id: str, prefix: str) -> int | None:
    """Answer one request: XADD its label or its failure; None when the frame is gone.

    A failed request fails the job too (after its entry is sent), with its own error.
    """
    ctx = _runtime()
    keys = Keys(prefix)
    frame = ride_out(
        lambda: read_frame(ctx.client, keys, frame_id), f"reading frame {frame_id}", ctx.stop
    )
    if frame is None:
        log.info(
            "frame %s is gone (finalised or expired); request %s dropped", frame_id, request_id
        )
        return None
    try:
        label = check_label(ctx.backend(labeler_id).label(frame))
        if label is None:
            raise LabelError(
                f"labeler {labeler_id}, frame {frame_id}: the backend gave no 0/1 label"
            )
    except Exception as err:  # a LabelError, RQ's job timeout, or a bug in a backend
        reason = _reason(err, f"labeler {labeler_id}, frame {frame_id}")
        log.warning("request %s failed: %s", request_id, reason)
        _send(ctx, keys, LabelEntry.failure(frame_id, labeler_id, request_id, reason))
        raise  # here, not later: a stored exception would keep its frames (and sockets) alive
    _send(ctx, keys, LabelEntry(frame_id, labeler_id, request_id, label))
    return label


class UntrustedJobError(Exception):
    """A job in a labeler queue that is not a plain :func:`label_frame` request."""


class LabelJob(Job):
    """An RQ job that can only run :func:`label_frame`: no other function, no callbacks."""

    @property
    def func(self) -> Any:
        if self.func_name != LABEL_FRAME or self.instance is not None:
            raise UntrustedJobError(
                f"job {self.id}: refusing {self.func_name!r}; a labeler worker runs {LABEL_FRAME}"
            )
        return label_frame

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, status: str | JobStatus, *, exc_string: str | None = None) -> None:
        return None
