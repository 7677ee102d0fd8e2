"""The labeler worker process: one RQ worker per labeler, each in its own thread.

RQ takes a job from the first non-empty queue it listens on, so one RQ worker for several
labelers would starve all but the first while their heartbeats say they are live. Here each
labeler has its own RQ ``SimpleWorker`` (no fork per job: a backend loads its model once) in
its own thread: every labeler is served, and a slow one holds up nobody else. The job itself is
:func:`gtx_stream.pipeline.label.job.label_frame`.

- **Stopping**: SIGTERM or Ctrl-C (or ``stop_event``) let each worker finish its request in
  hand and exit 0 (RQ's warm shutdown); a second signal exits at once (1).
- **Redis restarts**: a worker whose Redis goes away ends its RQ loop quietly
  (:class:`RedisOutage`), waits until Redis answers and serves again; the request in hand
  retries its answer meanwhile. A stop during an outage leaves that request to its lease.
- **Heartbeats**: one thread stamps each labeler whose worker thread runs into ``keys.live``
  every :data:`HEARTBEAT_SECONDS`; the aggregator dispatches only to live labelers.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.logutils import setup_loghandlers
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from gtx_stream.config import ConfigError, Settings
from gtx_stream.core.signals import set_from_signal
from gtx_stream.pipeline.label.backends import Backend, build_backend
from gtx_stream.pipeline.label.base import LabelError
from gtx_stream.pipeline.label.job import LabelJob, WorkerContext, labeler_settings, set_context
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.connection import connect, connect_queue, has_queue_redis
from gtx_stream.store.keys import Keys
from gtx_stream.store.shards import layout

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 1.0
"""How often the worker stamps the labelers it serves into ``keys.live``."""

STOP_POLL_SECONDS = 1
"""Each RQ worker waits for jobs this long at a time, then checks the stop event."""

REDIS_WAIT_FIRST = 0.1
"""Seconds between pings while waiting for Redis to come back; doubles up to REDIS_WAIT_MAX."""
REDIS_WAIT_MAX = 2.0


class RedisOutage(StopRequested):
    """Redis went away under an RQ worker. A ``StopRequested``, so RQ's loop ends without a
    traceback (RQ's own loop would sleep up to a minute per retry, deaf to a stop)."""


class LabelerWorker(SimpleWorker):
    """RQ's SimpleWorker for one labeler's queue, in a thread, stopped by an event.

    ``finished`` says the loop ended as asked (stop event, or an empty queue in burst mode);
    ``outage`` holds the Redis error that ended it otherwise.
    """

    log_result_lifespan = False
    death_penalty_class = TimerDeathPenalty  # SIGALRM-based job timeouts need the main thread

    def __init__(self, *args: Any, stop_event: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop_event = stop_event
        self.finished = False
        self.outage: Exception | None = None

    def _install_signal_handlers(self) -> None:
        return None  # the process handles signals (run_labeler_worker) and sets the event

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        if timeout is None:  # burst: RQ does not block
            result = None
            if not self._stop_event.is_set():
                result = super().dequeue_job_and_maintain_ttl(None, max_idle_time)
            self.finished = result is None
            return result
        # Block in short slices so that a set event ends the loop within a slice. A job taken
        # in the last slice is still run: it left the queue, so dropping it would lose it.
        while not self._stop_event.is_set():
            result = super().dequeue_job_and_maintain_ttl(STOP_POLL_SECONDS, STOP_POLL_SECONDS)
            if result is not None:
                return result
        self.finished = True
        return None

    @contextmanager
    def _outage_ends_loop(self) -> Iterator[None]:
        try:
            yield
        except UNAVAILABLE as err:
            self.outage = err
            raise RedisOutage(str(err)) from err

    # The calls of RQ's loop that talk to Redis outside a job: heartbeat() comes first in each
    # dequeue, so a Redis that went away ends the loop within one dequeue slice.
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        with self._outage_ends_loop():
            super().heartbeat(timeout, pipeline)

    def check_for_suspension(self, burst: bool) -> None:
        with self._outage_ends_loop():
            super().check_for_suspension(burst)

    def run_maintenance_tasks(self) -> None:
        with self._outage_ends_loop():
            super().run_maintenance_tasks()

    def execute_job(self, job: Job, queue: Queue) -> None:
        with self._outage_ends_loop():
            super().execute_job(job, queue)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:
        """A request failed with a :class:`LabelError` of its own (no truth, a garbage answer,
        an HTTP 500) was logged in one line (``job.py``: "request ... failed: ..."), whose
        message says why: not RQ's traceback again. One caused by another exception (a python
        labeler's function raised) or any other error keeps RQ's traceback, which shows where.
        (RQ's failure handling is elsewhere; this worker registers no exception handlers.)"""
        err = exc_info[1]
        if not isinstance(err, LabelError) or err.__cause__ is not None:
            super().handle_exception(job, *exc_info)

    def teardown(self) -> None:
        if self.outage is None:
            try:
                super().teardown()  # deregisters from RQ
                return
            except UNAVAILABLE as err:
                self.outage = err
        # Redis is away: leave the registration to expire (or to forget()) and stop listening
        if self.pubsub_thread is not None:
            self.pubsub_thread.stop()

    def forget(self) -> None:
        """Deregister a worker whose loop an outage ended, so its name can serve again."""
        try:
            self.register_death()
        except redis.RedisError as err:
            log.debug("could not deregister %s: %s", self.name, err)


def wait_for_redis(client: redis.Redis, stop: threading.Event, who: str) -> bool:
    """Ping until Redis answers (True) or ``stop`` is set (False), with backoff."""
    wait = REDIS_WAIT_FIRST
    since = time.monotonic()
    log.warning("%s: redis unreachable, waiting for it", who)
    while not stop.is_set():
        try:
            client.ping()
        except UNAVAILABLE:
            stop.wait(wait)
            wait = min(2 * wait, REDIS_WAIT_MAX)
            continue
        log.info("%s: redis is back after %.1f s", who, time.monotonic() - since)
        return True
    return False


class LiveHeartbeat:
    """A thread that stamps each served labeler into ``keys.live`` every ``interval`` seconds.

    ``served()`` names the labelers to stamp now (those whose worker thread runs); the others
    are removed, as are all of them on ``stop()``.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        labeler_ids: Sequence[str],
        served: Callable[[], list[str]] | None = None,
        interval: float = HEARTBEAT_SECONDS,
    ) -> None:
        self.client = client
        self.keys = keys
        self.labeler_ids = list(labeler_ids)
        self.served = served or (lambda: self.labeler_ids)
        self.interval = interval
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labeler-heartbeat", daemon=True)

    def beat(self) -> None:
        now = time.time()
        served = self.served()
        gone = [lid for lid in self.labeler_ids if lid not in served]
        with self.client.pipeline(transaction=False) as pipe:
            if served:
                pipe.zadd(self.keys.live, dict.fromkeys(served, now))
            if gone:
                pipe.zrem(self.keys.live, *gone)
            pipe.execute()

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except redis.RedisError as err:
                if not self._failing:  # once per outage, not once a second
                    log.warning("heartbeat to %s failed: %s", self.keys.live, err)
                self._failing = True
                continue
            if self._failing:
                log.info("heartbeat to %s is back", self.keys.live)
            self._failing = False

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            self.client.zrem(self.keys.live, *self.labeler_ids)
        except redis.RedisError as err:
            log.warning("could not remove %s from %s: %s", self.labeler_ids, self.keys.live, err)


def worker_name(labeler_id: str) -> str:
    """``<labeler>.<token>@<host>:<pid>``, a new token each time: RQ refuses a name that is
    still registered, which a worker ended by an outage (or a restarted container, with the
    same host name and pid 1) may still be, and checking it needs a command the labeler's ACL
    user lacks (docs/access.md)."""
    return f"{labeler_id}.{secrets.token_hex(2)}@{socket.gethostname()}:{os.getpid()}"


class _LabelerThread(threading.Thread):
    """Serves one labeler's queue: an RQ worker, started again after each Redis outage."""

    def __init__(
        self, client: redis.Redis, keys: Keys, labeler_id: str, stop: threading.Event, burst: bool
    ) -> None:
        super().__init__(name=f"labeler-{labeler_id}", daemon=True)
        self.client = client
        self.keys = keys
        self.labeler_id = labeler_id
        self.stop = stop
        self.burst = burst
        self.failed = False

    def run(self) -> None:
        while not self.stop.is_set():
            worker: LabelerWorker | None = None
            outage: Exception | None = None
            try:
                worker = LabelerWorker(
                    [self.keys.queue(self.labeler_id)],
                    name=worker_name(self.labeler_id),
                    connection=self.client,
                    serializer=JSONSerializer,
                    job_class=LabelJob,
                    default_result_ttl=0,
                    log_job_description=False,
                    stop_event=self.stop,
                )
                worker.work(burst=self.burst, logging_level=_rq_level())
                outage = worker.outage
            except UNAVAILABLE as err:  # starting: RQ names its connection, registers itself
                outage = err
            except Exception:
                log.exception("labeler %s: the RQ worker failed", self.labeler_id)
            if (worker is not None and worker.finished) or self.stop.is_set():
                return
            if outage is None:
                # RQ's loop quit on an error it logged (a refused command, say): serving on
                # would keep the labeler live without answering, so the process stops
                log.error("labeler %s: the RQ worker stopped; stopping", self.labeler_id)
                self.failed = True
                self.stop.set()
                return
            if not wait_for_redis(self.client, self.stop, f"labeler {self.labeler_id}"):
                return
            if worker is not None:
                worker.forget()


def _rq_level() -> str:
    # RQ logs every job at INFO; ours says what matters
    return "DEBUG" if log.isEnabledFor(logging.DEBUG) else "WARNING"


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (warm shutdown); a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("%s: stopping after the requests in hand", signal.Signals(signum).name)
        set_from_signal(stop)

    saved = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_labeler_worker(
    settings: Settings,
    labeler_ids: Sequence[str],
    burst: bool = False,
    stop_event: threading.Event | None = None,
) -> int:
    """Serve the queues of ``labeler_ids`` until stopped; returns the exit status.

    0 after a stop (SIGTERM or Ctrl-C in the main thread, or ``stop_event``) or, with
    ``burst``, once every queue is empty; 1 when a worker could not go on. Configured
    accuracies of the served labelers are registered unless one is stored for them already.
    Raises ConfigError (unknown labeler, unusable Redis URL) and LabelError (a backend that
    cannot be built) before serving anything.
    """
    from gtx_stream.store.params import register_configured

    if not labeler_ids:
        raise ConfigError("config error: no labeler to serve")
    ids = list(dict.fromkeys(labeler_ids))
    chosen = [labeler_settings(settings, lid) for lid in ids]
    people = [lab.id for lab in chosen if lab.backend == "human"]
    if people:
        raise ConfigError(
            f"config error: {', '.join(people)}: backend 'human' is a person, who labels on the "
            "label server's page (gtx-stream label-server); no labeler worker serves it"
        )
    keys = Keys(settings.redis.prefix)
    stop = stop_event if stop_event is not None else threading.Event()
    backends: dict[str, Backend] = {}
    clients: list[redis.Redis] = []
    try:
        for lab in chosen:
            backends[lab.id] = build_backend(lab)
        # three clients: RQ raises its socket timeout above its blocking dequeue; the job's
        # reads and labels keep the configured one; the heartbeat never waits behind either.
        # With redis.queue_url, RQ's and the job's batch takes are on the queue Redis.
        jobs = connect(settings)
        clients.append(jobs)
        keys = layout(jobs, keys)  # heartbeats go to the registry's slot on a Redis Cluster
        register_configured(jobs, keys, settings, labeler_ids=ids, overwrite=False)
        own_queue = has_queue_redis(settings)
        rq_client = connect_queue(settings, check=own_queue)  # one line if it is unreachable
        clients.append(rq_client)
        takes = connect_queue(settings, check=False) if own_queue else None
        beats = connect(settings, check=False)
        clients += [beats] + ([takes] if takes is not None else [])

        for name in ("rq.worker", "rq.job"):  # once here, not racing in each thread
            setup_loghandlers(_rq_level(), name=name)
        threads = [_LabelerThread(rq_client, keys, lid, stop, burst) for lid in ids]
        heartbeat = LiveHeartbeat(
            beats, keys, ids, served=lambda: [t.labeler_id for t in threads if t.is_alive()]
        )
        with _stop_on_signals(stop):
            set_context(WorkerContext(jobs, backends, stop, queue=takes))
            try:
                for thread in threads:
                    thread.start()
                heartbeat.start()
                log.info("labeler worker serving %s", ", ".join(ids))
                for thread in threads:
                    while thread.is_alive():  # in slices: signal handlers run in between
                        thread.join(timeout=0.2)
            except BaseException:
                stop.set()  # an error or a second signal: the threads end with the process
                raise
            finally:
                heartbeat.stop()
                set_context(None)
        failed = [t.labeler_id for t in threads if t.failed]
        log.info("labeler worker stopped" + (f" ({', '.join(failed)} failed)" if failed else ""))
        return 1 if failed else 0
    finally:
        for backend in backends.values():
            backend.close()
        for client in clients:
            client.close()
