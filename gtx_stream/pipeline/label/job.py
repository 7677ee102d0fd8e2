"""The RQ job of a request: :func:`label_frame`, and :class:`LabelJob`, which runs nothing else.

``label_frame`` reads the frame, asks the labeler's backend, and XADDs one
:class:`~gtx_stream.core.records.LabelEntry` to the labels stream (for a labeler with
``batch > 1``, one per request of its batch, :mod:`~gtx_stream.pipeline.label.batch`): the
label, or, when the request failed (a backend error, the backend's own timeout or RQ's job
timeout, a garbage answer), a failed entry with the reason, at once, so the aggregator need
not wait out the lease. A failed request also fails its RQ job (RQ keeps it in its failed-job
registry; for a batch, the one job that carried it). The job decides nothing: the aggregator
applies the entries.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from rq.job import Job, JobStatus, get_current_job
from rq.timeouts import JobTimeoutException

from gtx_stream.config import ConfigError, LabelerSettings, Settings
from gtx_stream.core.records import LabelEntry, LabelRequest, text
from gtx_stream.pipeline.label.backends import (
    Backend,
    Frame,
    LabelError,
    Outcome,
    build_backend,
    check_label,
)
from gtx_stream.pipeline.label.batch import take_requests
from gtx_stream.pipeline.label.requests import LABEL_FRAME
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import stored_keys

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
    """The state: frames, images, the labels stream."""
    backends: dict[str, Backend] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    build: Callable[[str], Backend] | None = None
    """Builds a backend not in ``backends`` (a plain ``rq worker``); None: refuse it."""
    queue: redis.Redis | None = None
    """The label requests' Redis (``redis.queue_url``), where a batch is taken; None:
    ``client``."""

    @property
    def queue_client(self) -> redis.Redis:
        return self.queue if self.queue is not None else self.client

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
        from gtx_stream.store.connection import connect, has_queue_redis

        settings = load_settings()
        # the job's connection is RQ's, the queue Redis; the state is redis.url's
        state = connect(settings) if has_queue_redis(settings) else job.connection
        _fallback = WorkerContext(
            state, build=lambda lid: build_backend(labeler_settings(settings, lid)),
            queue=job.connection,
        )  # fmt: skip
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
        except UNAVAILABLE as err:
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
    return read_frames(client, keys, [frame_id])[0]


def read_frames(
    client: redis.Redis, keys: Keys, frame_ids: Sequence[str], with_image: bool = True
) -> list[Frame | None]:
    """Each frame's hash and (``with_image``) JPEG in one round trip; None for a frame that
    is gone."""
    with client.pipeline(transaction=False) as pipe:
        for frame_id in frame_ids:
            pipe.hgetall(keys.frame(frame_id))
            if with_image:
                pipe.get(keys.image(frame_id))
        replies = pipe.execute()
    step = 2 if with_image else 1
    out: list[Frame | None] = []
    for i, frame_id in enumerate(frame_ids):
        raw = replies[step * i]
        jpeg = replies[step * i + 1] if with_image else None
        metadata = {text(k): text(v) for k, v in raw.items()} if raw else {}
        if metadata.get("state", "open") != "open" or not raw:
            out.append(None)  # finalised (or dropped, or expired): no label is needed
            continue
        if isinstance(jpeg, str):  # a client with decode_responses=True cannot carry JPEG bytes
            raise LabelError("the labeler's Redis client must not decode responses")
        out.append(Frame(frame_id, metadata, jpeg))
    return out


def _reason(err: BaseException, where: str) -> str:
    """Why a request failed, one line naming the labeler and the frame (or the batch)."""
    if isinstance(err, LabelError):
        return str(err)
    if isinstance(err, JobTimeoutException):  # RQ's job timeout: the lease, in whole seconds
        job = get_current_job()
        limit = f" ({job.timeout} s)" if job is not None and job.timeout else ""
        return f"{where}: no label within the job timeout{limit}"
    return f"{where}: {type(err).__name__}: {err}"  # a bug in a backend fails a request too


def _send(ctx: WorkerContext, keys: Keys, entries: Sequence[LabelEntry]) -> None:
    """XADD every entry in one round trip (one XADD each: the aggregator reads them one by
    one). Sent again whole after an outage: an entry that got in twice still counts once."""
    if len(entries) == 1:
        entry = entries[0]
        what = f"{'failure' if entry.failed else 'label'} of request {entry.request_id}"
    else:
        what = f"{len(entries)} answers of a batch"
    fields: list[dict[Any, Any]] = [entry.to_fields() for entry in entries]

    def xadd_all() -> None:
        # each to the labels stream of its frame's shard, from the pipeline's stored count
        # (read once per process): the aggregators' own, whatever this worker's config says
        sharded = stored_keys(ctx.client, keys)
        with ctx.client.pipeline(transaction=False) as pipe:
            for entry, f in zip(entries, fields, strict=True):
                pipe.xadd(sharded.of_frame(entry.frame_id).labels, f)
            pipe.execute()

    while True:
        try:
            ride_out(xadd_all, what, ctx.stop)
            return
        except JobTimeoutException:
            # RQ's job timeout bounds the backend's work; these answers are in hand, so they are
            # sent anyway (late, each still counts once if its frame is open)
            log.warning("job timeout while sending the %s: still sending", what)


def label_frame(frame_id: str, labeler_id: str, request_id: str, prefix: str) -> int | None:
    """Answer one request, and with ``batch > 1`` the requests that wait behind it
    (:mod:`~gtx_stream.pipeline.label.batch`): XADD each one's label or failure.

    With ``batch > 1`` the job then serves the labeler's further requests, a batch at a time,
    while they keep coming (:func:`_session_goes_on`). Returns this request's label; None
    when its frame is gone. A failed request fails the job too (after every entry of its
    batch is sent, and no further batch is taken): with its own error, or for a batch, one
    that counts the failures.
    """
    ctx = _runtime()
    keys = Keys(prefix)
    requests = [LabelRequest(labeler_id, frame_id, request_id, prefix)]
    try:
        backend: Backend | None = ctx.backend(labeler_id)
    except LabelError:
        backend = None  # reported below, as the request's failure
    if backend is None or backend.batch == 1:
        return _answer(ctx, keys, labeler_id, backend, requests)
    batch = backend.batch

    def take(count: int, wait: float) -> list[LabelRequest]:
        return ride_out(
            lambda: take_requests(ctx.queue_client, keys, labeler_id, count, wait),
            f"taking a batch for labeler {labeler_id}",
            ctx.stop,
        )

    started = time.monotonic()
    job = get_current_job()
    timeout = float(job.timeout) if job is not None and job.timeout else None
    own = _answer(ctx, keys, labeler_id, backend, requests + take(batch - 1, 0.0))
    longest = time.monotonic() - started
    while _session_goes_on(ctx, started, longest, timeout):
        requests = take(batch, SESSION_IDLE_SECONDS)
        if not requests:
            break
        began = time.monotonic()
        _answer(ctx, keys, labeler_id, backend, requests, first_is_own=False)
        longest = max(longest, time.monotonic() - began)
    return own


SESSION_SECONDS = 2.0
"""How long one RQ job of a labeler with ``batch > 1`` goes on taking further batches: RQ's
own bookkeeping (~58 commands a job on the worker's side) is paid once per session."""
SESSION_IDLE_SECONDS = 0.25
"""A session ends when no request comes for this long (one ``BLPOP`` waits for it)."""


def _session_goes_on(
    ctx: WorkerContext, started: float, longest: float, timeout: float | None
) -> bool:
    """Whether the job takes another batch: not asked to stop, and another batch as long as
    the longest so far, twice over, still ends within :data:`SESSION_SECONDS` and half of
    RQ's job timeout (so that the timeout never cuts a batch of the session short)."""
    if ctx.stop.is_set():
        return False
    limit = SESSION_SECONDS if timeout is None else min(SESSION_SECONDS, timeout / 2)
    return time.monotonic() - started + 2 * longest < limit


def _answer(
    ctx: WorkerContext,
    keys: Keys,
    labeler_id: str,
    backend: Backend | None,
    requests: Sequence[LabelRequest],
    first_is_own: bool = True,
) -> int | None:
    """Read the frames of ``requests``, ask the backend once, XADD an entry for each.

    Returns the first request's label (None when its frame is gone, or with
    ``first_is_own=False``); raises after sending when any request failed.
    """
    with_image = backend is None or backend.needs_image
    ids = [req.frame_id for req in requests]
    frames = ride_out(
        # the frames' keys name their shard on a Redis Cluster (the pipeline's stored count)
        lambda: read_frames(ctx.client, stored_keys(ctx.client, keys), ids, with_image),
        f"reading {len(requests)} frame(s), {requests[0].frame_id} first",
        ctx.stop,
    )
    asked = []
    for req, frame in zip(requests, frames, strict=True):
        if frame is None:
            log.info(
                "frame %s is gone (finalised or expired); request %s dropped",
                req.frame_id, req.request_id,
            )  # fmt: skip
        else:
            asked.append((req, frame))
    if not asked:
        return None
    outcomes, error = _label(ctx, labeler_id, [frame for _, frame in asked])
    entries = []
    failed: list[LabelError] = []
    for (req, _), outcome in zip(asked, outcomes, strict=True):
        if isinstance(outcome, LabelError):
            log.warning("request %s failed: %s", req.request_id, outcome)
            entries.append(
                LabelEntry.failure(req.frame_id, labeler_id, req.request_id, str(outcome))
            )
            failed.append(outcome)
        else:
            entries.append(LabelEntry(req.frame_id, labeler_id, req.request_id, outcome))
    _send(ctx, keys, entries)
    # raised here, not later: a stored exception would keep its frames (and sockets) alive
    if error is not None:
        raise error
    if failed:
        if len(asked) == 1:
            raise failed[0]
        raise LabelError(f"{len(failed)} of {len(asked)} requests of the batch failed: {failed[0]}")
    own = entries[0] if first_is_own and asked[0][0] is requests[0] else None
    return own.label if own is not None else None


def _label(
    ctx: WorkerContext, labeler_id: str, frames: Sequence[Frame]
) -> tuple[list[Outcome], BaseException | None]:
    """One outcome per frame, and the error that failed the whole call (else None)."""
    where = f"labeler {labeler_id}, " + (
        f"frame {frames[0].frame_id}" if len(frames) == 1 else f"batch of {len(frames)} frames"
    )
    try:
        outcomes = ctx.backend(labeler_id).label_batch(frames)
        if len(outcomes) != len(frames):
            raise LabelError(f"{where}: the backend gave {len(outcomes)} answers")
    except Exception as err:  # a LabelError, RQ's job timeout, or a bug in a backend
        return [LabelError(_reason(err, where))] * len(frames), err
    checked: list[Outcome] = []
    for frame, outcome in zip(frames, outcomes, strict=True):
        label = outcome if isinstance(outcome, LabelError) else check_label(outcome)
        if label is None:
            label = LabelError(
                f"labeler {labeler_id}, frame {frame.frame_id}: the backend gave no 0/1 label"
            )
        checked.append(label)
    return checked, None


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
