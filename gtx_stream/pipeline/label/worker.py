"""Label requests as RQ jobs, and the labeler worker that answers them.

A request is a job ``label_frame(frame_id, labeler_id, request_id, prefix)`` on the queue of
one labeler (:meth:`Keys.queue`), with JSON arguments. The worker is an RQ ``SimpleWorker``
(no fork per job: a backend loads its model once) that reads the frame, asks the backend of
that labeler, and XADDs ``{frame_id, labeler, label, request_id, labeled_at}`` to the labels
stream. It never decides anything: the aggregator applies the label, and its lease re-asks
another labeler when a job fails or is late.

Job payloads are JSON (RQ's ``JSONSerializer``), and the worker runs nothing but
:func:`label_frame`: a job that names another function, an instance, callbacks or webhooks is
failed without running them, so writing into the queue does not give code execution.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus, get_current_job
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from gtx_stream.config import ConfigError, LabelerSettings, Settings
from gtx_stream.pipeline.label.backends import (
    Backend,
    Frame,
    LabelError,
    build_backend,
    check_label,
)
from gtx_stream.store.keys import Keys

log = logging.getLogger(__name__)

LABEL_FRAME = "gtx_stream.pipeline.label.worker.label_frame"
"""The only function a labeler worker runs."""

FAILURE_TTL = 86400
"""Seconds RQ keeps a failed request in its failed-job registry (for ``rq info``, requeue)."""

HEARTBEAT_SECONDS = 1.0
"""How often a worker stamps the labelers it serves into ``keys.live``."""

STOP_POLL_SECONDS = 1
"""With a stop event, the worker waits for jobs this long at a time, then checks the event."""


# --- requests (the aggregator's side) -------------------------------------------------------


@dataclass(frozen=True)
class LabelRequest:
    """Ask ``labeler_id`` for a label of ``frame_id``; ``request_id`` comes back with the label."""

    labeler_id: str
    frame_id: str
    request_id: str


def job_id(prefix: str, request_id: str) -> str:
    """The RQ job id of a request: readable, and unique across prefixes sharing one Redis.

    RQ takes only ``[A-Za-z0-9_-]`` in job ids, while request and labeler ids may hold
    ``.:@``; those become ``_``, and a hash of (prefix, request id) keeps distinct requests
    apart. The request id itself travels in the job's arguments and on the labels stream.
    """
    digest = hashlib.blake2b(f"{prefix}\0{request_id}".encode(), digest_size=8).hexdigest()
    return _NOT_IN_JOB_ID.sub("_", f"{prefix}-{request_id}")[:160] + "-" + digest


_NOT_IN_JOB_ID = re.compile(r"[^A-Za-z0-9_-]")


def _job_timeout(lease_seconds: float) -> int:
    # RQ takes whole seconds; a job may run as long as its lease, after which another
    # labeler is asked anyway.
    return max(1, math.ceil(lease_seconds))


def enqueue_requests(
    client: redis.Redis,
    keys: Keys,
    requests: Iterable[LabelRequest],
    lease_seconds: float,
    pipeline: Pipeline | None = None,
) -> list[Job]:
    """Enqueue many label requests in one round trip (RQ's ``enqueue_many`` per queue).

    With ``pipeline``, the jobs are only queued on it and the caller executes it (e.g. together
    with its own writes); without, one pipeline is executed here.
    """
    by_labeler: dict[str, list[Any]] = {}
    for req in requests:
        data = Queue.prepare_data(
            LABEL_FRAME,
            args=[req.frame_id, req.labeler_id, req.request_id, keys.prefix],
            timeout=_job_timeout(lease_seconds),
            result_ttl=0,
            failure_ttl=FAILURE_TTL,
            job_id=job_id(keys.prefix, req.request_id),
            description=f"label {req.frame_id} by {req.labeler_id}",
        )
        by_labeler.setdefault(req.labeler_id, []).append(data)
    pipe = pipeline if pipeline is not None else client.pipeline(transaction=False)
    jobs: list[Job] = []
    for labeler_id, datas in by_labeler.items():
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
    req = LabelRequest(labeler_id, frame_id, request_id)
    return enqueue_requests(client, keys, [req], lease_seconds, pipeline)[0]


# --- the job (the worker's side) -------------------------------------------------------------


@dataclass
class WorkerContext:
    """What the job function needs, set once when the worker process starts."""

    client: redis.Redis
    backends: dict[str, Backend] = field(default_factory=dict)


_context: WorkerContext | None = None
_fallback_backends: dict[str, Backend] = {}


def set_context(context: WorkerContext | None) -> None:
    """Install (or with None, remove) the context :func:`label_frame` uses in this process."""
    global _context
    _context = context


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _backend(labeler_id: str) -> Backend:
    if _context is not None:
        backend = _context.backends.get(labeler_id)
        if backend is None:
            served = ", ".join(sorted(_context.backends)) or "none"
            raise LabelError(f"this worker does not serve labeler {labeler_id} (serves {served})")
        return backend
    # Run by a plain ``rq worker``: build the labeler from the settings, once per process.
    if labeler_id not in _fallback_backends:
        from gtx_stream.config import load_settings

        _fallback_backends[labeler_id] = build_backend(
            _labeler_settings(load_settings(), labeler_id)
        )
    return _fallback_backends[labeler_id]


def _connection() -> redis.Redis:
    if _context is not None:
        return _context.client
    job = get_current_job()
    if job is None:
        raise LabelError("label_frame runs inside a labeler worker (no worker context, no RQ job)")
    return job.connection


def read_frame(client: redis.Redis, keys: Keys, frame_id: str) -> Frame | None:
    """The frame hash and JPEG, or None when the frame is gone (not open, or expired)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.frame(frame_id))
        pipe.get(keys.image(frame_id))
        raw, jpeg = pipe.execute()
    if not raw:
        return None
    metadata = {_text(k): _text(v) for k, v in raw.items()}
    if metadata.get("state", "open") != "open":  # finalised (or dropped): no label is needed
        return None
    if isinstance(jpeg, str):  # a client with decode_responses=True cannot carry JPEG bytes
        raise LabelError("the labeler's Redis client must not decode responses")
    return Frame(frame_id, metadata, jpeg)


def label_frame(frame_id: str, labeler_id: str, request_id: str, prefix: str) -> int | None:
    """Label one frame for one request and XADD the label; None when the frame is gone.

    A :class:`LabelError` (or any exception from the backend) fails the job: RQ keeps it in
    its failed-job registry and the aggregator's lease asks another labeler.
    """
    keys = Keys(prefix)
    client = _connection()
    frame = read_frame(client, keys, frame_id)
    if frame is None:
        log.info(
            "frame %s is gone (finalised or expired); request %s dropped", frame_id, request_id
        )
        return None
    try:
        label = check_label(_backend(labeler_id).label(frame))
        if label is None:
            raise LabelError(f"labeler {labeler_id}, frame {frame_id}: backend gave no 0/1 label")
    except LabelError as err:
        log.warning("request %s failed: %s", request_id, err)
        raise
    client.xadd(
        keys.labels,
        {
            "frame_id": frame_id,
            "labeler": labeler_id,
            "label": label,
            "request_id": request_id,
            "labeled_at": repr(time.time()),
        },
    )
    return label


# --- the worker process ----------------------------------------------------------------------


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


class LabelerWorker(SimpleWorker):
    """RQ's SimpleWorker, quiet per job, stoppable by an event, usable off the main thread."""

    log_result_lifespan = False

    def __init__(
        self,
        *args: Any,
        stop_event: threading.Event | None = None,
        handle_signals: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._stop_event = stop_event
        self._handle_signals = handle_signals
        if not handle_signals:
            # SIGALRM-based job timeouts need the main thread; a timer thread does not.
            self.death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        if self._handle_signals:
            if self._stop_event is None:
                self._stop_event = threading.Event()
            super()._install_signal_handlers()

    def _shutdown(self) -> None:
        # RQ raises StopRequested from the signal handler when the worker is not busy. With
        # several queues RQ dequeues by BLPOP, so a signal landing between BLPOP taking a job
        # and the worker turning busy loses that job (popped, in no registry) until the
        # aggregator's lease runs out. Stop after the job in hand instead; the sliced dequeue
        # below sees the event within STOP_POLL_SECONDS.
        self._stop_requested = True
        if self._stop_event is not None:
            self._stop_event.set()

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        if self._stop_event is None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)
        if timeout is None:  # burst: RQ does not block
            if self._stop_event.is_set():
                return None
            return super().dequeue_job_and_maintain_ttl(None, max_idle_time)
        # Block in short slices so that a set event ends the loop within a slice.
        while not self._stop_event.is_set():
            result = super().dequeue_job_and_maintain_ttl(STOP_POLL_SECONDS, STOP_POLL_SECONDS)
            if result is not None:
                return result
        return None


class LiveHeartbeat:
    """A thread that stamps each served labeler into ``keys.live`` every ``interval`` seconds.

    The aggregator dispatches only to labelers with a recent stamp; ``stop()`` removes them.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        labeler_ids: Sequence[str],
        interval: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.client = client
        self.keys = keys
        self.labeler_ids = list(labeler_ids)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labeler-heartbeat", daemon=True)

    def beat(self) -> None:
        now = time.time()
        self.client.zadd(self.keys.live, dict.fromkeys(self.labeler_ids, now))

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except redis.RedisError as err:
                log.warning("heartbeat to %s failed: %s", self.keys.live, err)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.client.zrem(self.keys.live, *self.labeler_ids)
        except redis.RedisError as err:
            log.warning("could not remove %s from %s: %s", self.labeler_ids, self.keys.live, err)


def _labeler_settings(settings: Settings, labeler_id: str) -> LabelerSettings:
    for lab in settings.labelers:
        if lab.id == labeler_id:
            return lab
    known = ", ".join(lab.id for lab in settings.labelers) or "none configured"
    raise ConfigError(f"config error: labeler {labeler_id!r} is not in labelers (known: {known})")


def redis_url(settings: Settings) -> str:
    url = settings.redis.url.get_secret_value()
    if not url:
        raise ConfigError(
            "config error: redis.url is empty; set [redis] url in the config or GTX_REDIS__URL"
        )
    return url


def _worker_name(labeler_ids: Sequence[str]) -> str:
    who = "+".join(labeler_ids) if len(labeler_ids) <= 3 else f"{len(labeler_ids)}-labelers"
    return f"{who}@{socket.gethostname()}:{os.getpid()}"


def run_labeler_worker(
    settings: Settings,
    labeler_ids: Sequence[str],
    burst: bool = False,
    stop_event: threading.Event | None = None,
) -> int:
    """Serve the queues of ``labeler_ids`` until stopped; returns the exit status (0).

    SIGTERM or Ctrl-C (main thread), or ``stop_event``, finish the current job and return
    (RQ's warm shutdown); ``burst`` returns once the queues are empty. Configured accuracies
    of the served labelers are registered unless an accuracy is stored for them already.
    """
    from gtx_stream.store.params import register_configured

    if not labeler_ids:
        raise ConfigError("config error: no labeler to serve")
    ids = list(dict.fromkeys(labeler_ids))
    chosen = [_labeler_settings(settings, lid) for lid in ids]
    url = redis_url(settings)
    keys = Keys(settings.redis.prefix)
    backends: dict[str, Backend] = {}
    try:
        for lab in chosen:
            backends[lab.id] = build_backend(lab)
        client = redis.Redis.from_url(url, socket_timeout=settings.redis.socket_timeout)
        client.ping()
        register_configured(client, keys, settings, labeler_ids=ids, overwrite=False)

        main_thread = threading.current_thread() is threading.main_thread()
        worker = LabelerWorker(
            [keys.queue(lid) for lid in ids],
            name=_worker_name(ids),
            connection=client,
            serializer=JSONSerializer,
            job_class=LabelJob,
            default_result_ttl=0,
            log_job_description=False,
            stop_event=stop_event,
            handle_signals=main_thread,
        )
        saved = (
            {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
            if main_thread
            else {}
        )
        heartbeat = LiveHeartbeat(
            redis.Redis.from_url(url, socket_timeout=settings.redis.socket_timeout), keys, ids
        )
        set_context(WorkerContext(worker.connection, backends))
        heartbeat.start()
        log.info("labeler worker %s serving %s", worker.name, ", ".join(ids))
        rq_level = "DEBUG" if log.isEnabledFor(logging.DEBUG) else "WARNING"
        try:
            worker.work(burst=burst, logging_level=rq_level)
        finally:
            heartbeat.stop()
            heartbeat.client.close()
            set_context(None)
            for sig, handler in saved.items():
                signal.signal(sig, handler)
        log.info("labeler worker %s stopped", worker.name)
        return 0
    finally:
        for backend in backends.values():
            backend.close()
