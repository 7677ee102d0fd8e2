"""Label requests as RQ jobs and the labeler worker, against a real Redis."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import import_attribute

from gtx_stream.config import ConfigError, Settings
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.records import LabelEntry
from gtx_stream.pipeline.label import job as job_module
from gtx_stream.pipeline.label.requests import (
    LABEL_FRAME,
    LabelRequest,
    enqueue_request,
    enqueue_requests,
    job_id,
)
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import get_labelers
from tests.labeler_fixtures import SLEEP_VARIABLE

REPO = Path(__file__).resolve().parents[2]
FIX = "tests.labeler_fixtures"


def settings_for(url: str, *labelers: dict[str, Any]) -> Settings:
    return Settings(redis={"url": url}, labelers=list(labelers))


def put_frame(
    r: redis.Redis, keys: Keys, frame_id: str, truth: int = 1, state: str = "open", **extra: str
) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 200, dtype=np.uint8))
    assert ok
    fields = {"state": state, "source": "cam", "frame_index": "1", "truth": str(truth), **extra}
    r.hset(keys.frame(frame_id), mapping=fields)
    r.set(keys.image(frame_id), buf.tobytes())
    return buf.tobytes()


def labels(r: redis.Redis, keys: Keys) -> list[dict[str, str]]:
    return [fields for _, fields in r.xrange(keys.labels)]


def rq_job_keys(r: redis.Redis) -> list[str]:
    return sorted(r.scan_iter("rq:job:*")) + sorted(r.scan_iter("rq:results:*"))


SIM = {"id": "alice", "backend": "simulated", "accuracy": 0.7, "seed": 5}


def test_request_is_labeled_once_and_leaves_no_job_key(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    put_frame(r, keys, "cam-1", truth=1)
    job = enqueue_request(r, keys, "alice", "cam-1", "cam-1.alice", lease_seconds=30)
    assert r.exists(f"rq:job:{job.id}")

    assert run_labeler_worker(settings_for(redis_url, SIM), ["alice"], burst=True) == 0

    [entry] = labels(r, keys)
    assert set(entry) == {"frame_id", "labeler", "label", "request_id", "labeled_at"}
    assert entry["frame_id"] == "cam-1"
    assert entry["labeler"] == "alice"
    assert entry["request_id"] == "cam-1.alice"
    assert int(entry["label"]) == simulated_label(5, "cam-1", "alice", 1, 0.7)
    assert abs(float(entry["labeled_at"]) - time.time()) < 60
    # result_ttl=0: nothing of the finished job stays in Redis
    assert rq_job_keys(r) == []
    assert r.llen(Queue(keys.queue("alice"), connection=r).key) == 0
    # the worker stamped itself live while running and removed itself on a clean exit
    assert r.zscore(keys.live, "alice") is None
    # a simulated labeler registers its configured accuracy
    assert get_labelers(r, keys)["alice"].accuracy == 0.7


def test_job_payload_is_json(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    job = enqueue_request(r, keys, "alice", "cam-1", "cam-1.alice", lease_seconds=12.5)
    data = redis.Redis.from_url(redis_url).hget(f"rq:job:{job.id}", "data")
    assert isinstance(data, bytes)
    payload = json.loads(zlib.decompress(data))
    assert payload == [LABEL_FRAME, None, ["cam-1", "alice", "cam-1.alice", "gtx"], {}]
    timeout, result_ttl, failure_ttl, origin = r.hmget(
        f"rq:job:{job.id}", ["timeout", "result_ttl", "failure_ttl", "origin"]
    )
    assert timeout == "13"  # whole seconds, at least the lease
    assert result_ttl == "0"
    assert failure_ttl is not None and int(failure_ttl) > 0
    assert origin == keys.queue("alice")
    # queued, as RQ reads it (its status written once, with the other fields) and in one HSET
    assert Job.fetch(job.id, connection=redis.Redis.from_url(redis_url)).get_status() == "queued"
    r.config_resetstat()
    enqueue_request(r, keys, "alice", "cam-2", "cam-2.alice", lease_seconds=12.5)
    assert r.info("commandstats")["cmdstat_hset"]["calls"] == 1


def test_label_frame_constant_names_the_job_function() -> None:
    # the enqueue side (requests.py, the aggregator's) and the worker (job.LabelJob) share it
    assert import_attribute(LABEL_FRAME) is job_module.label_frame
    assert job_module.label_frame.__module__ + ".label_frame" == LABEL_FRAME


def test_job_ids_are_valid_for_rq_and_distinct() -> None:
    ids = {
        job_id("gtx", "cam-1.alice"),
        job_id("gtx", "cam-1_alice"),
        job_id("other", "cam-1.alice"),
        job_id("gtx", "src-3.lab:x@y"),
    }
    assert len(ids) == 4
    assert all(i.replace("_", "").replace("-", "").isalnum() for i in ids)
    assert job_id("gtx", "cam-1.alice") == job_id("gtx", "cam-1.alice")


def test_many_requests_in_one_pipeline(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    for i in range(3):
        put_frame(r, keys, f"cam-{i}", truth=i % 2)
    reqs = [LabelRequest(lab, f"cam-{i}", f"cam-{i}.{lab}") for i in range(3) for lab in "ab"]
    with r.pipeline() as pipe:
        enqueue_requests(r, keys, reqs, lease_seconds=30, pipeline=pipe)
        assert r.exists(keys.labels) == 0 and not list(r.scan_iter("rq:job:*"))  # not sent yet
        pipe.execute()
    assert r.llen(Queue(keys.queue("a"), connection=r).key) == 3
    assert r.llen(Queue(keys.queue("b"), connection=r).key) == 3

    labelers = [{**SIM, "id": lab} for lab in "ab"]
    run_labeler_worker(settings_for(redis_url, *labelers), ["a", "b"], burst=True)
    got = {(e["frame_id"], e["labeler"]): int(e["label"]) for e in labels(r, keys)}
    assert got == {
        (f"cam-{i}", lab): simulated_label(5, f"cam-{i}", lab, i % 2, 0.7)
        for i in range(3)
        for lab in "ab"
    }
    assert rq_job_keys(r) == []


def test_gone_frames_are_not_labeled(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    put_frame(r, keys, "cam-final", state="final")
    enqueue_request(r, keys, "alice", "cam-final", "r1", 30)
    enqueue_request(r, keys, "alice", "cam-expired", "r2", 30)
    run_labeler_worker(settings_for(redis_url, SIM), ["alice"], burst=True)
    assert labels(r, keys) == []
    assert FailedJobRegistry(keys.queue("alice"), connection=r).count == 0
    assert rq_job_keys(r) == []


def test_python_labeler_sees_the_image(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    put_frame(r, keys, "cam-1", truth=0)  # a bright image whose truth says 0
    enqueue_request(r, keys, "model", "cam-1", "r1", 30)
    model = {"id": "model", "backend": "python", "target": f"{FIX}:bright"}
    run_labeler_worker(settings_for(redis_url, model), ["model"], burst=True)
    assert [e["label"] for e in labels(r, keys)] == ["1"]
    assert "model" not in get_labelers(r, keys)  # no configured accuracy, nothing registered


def test_backend_error_is_reported_and_fails_the_job(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    put_frame(r, keys, "cam-1")
    r.hdel(keys.frame("cam-1"), "truth")
    job = enqueue_request(r, keys, "alice", "cam-1", "r1", 30)
    run_labeler_worker(settings_for(redis_url, SIM), ["alice"], burst=True)
    [entry] = [LabelEntry.from_fields(e) for e in labels(r, keys)]
    assert (entry.frame_id, entry.labeler, entry.request_id, entry.failed) == (
        "cam-1",
        "alice",
        "r1",
        True,
    )
    assert "simulated labeler alice, frame cam-1: the frame has no truth" in entry.reason
    failed = FailedJobRegistry(keys.queue("alice"), connection=r, serializer=JSONSerializer)
    assert failed.get_job_ids() == [job.id]
    stored = Job.fetch(
        job.id, connection=redis.Redis.from_url(redis_url), serializer=JSONSerializer
    )
    result = stored.latest_result()
    assert result is not None and result.exc_string is not None
    assert "LabelError" in result.exc_string and "the frame has no truth" in result.exc_string


def test_worker_runs_nothing_but_label_frame(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    raw = redis.Redis.from_url(redis_url)
    name = keys.queue("alice")
    # a JSON job naming another function, and a pickled one, written into the labeler's queue
    Queue(name, connection=raw, serializer=JSONSerializer).enqueue(
        f"{FIX}.write_marker", str(marker), job_id="json-other"
    )
    Queue(name, connection=raw).enqueue(f"{FIX}.write_marker", str(marker), job_id="pickled")
    run_labeler_worker(settings_for(redis_url, SIM), ["alice"], burst=True)
    assert not marker.exists()
    failed = FailedJobRegistry(name, connection=raw, serializer=JSONSerializer)
    assert sorted(failed.get_job_ids()) == ["json-other", "pickled"]
    assert labels(r, keys) == []


def test_unknown_labeler_and_missing_url_are_config_errors(redis_url: str) -> None:
    with pytest.raises(ConfigError, match="labeler 'bob' is not in labelers"):
        run_labeler_worker(settings_for(redis_url, SIM), ["bob"], burst=True)
    with pytest.raises(ConfigError, match="redis.url is empty"):
        run_labeler_worker(settings_for("", SIM), ["alice"], burst=True)


def test_stop_event_ends_a_worker_in_a_thread(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    stop = threading.Event()
    done: list[int] = []
    settings = settings_for(redis_url, SIM)
    thread = threading.Thread(
        target=lambda: done.append(run_labeler_worker(settings, ["alice"], stop_event=stop))
    )
    thread.start()
    try:
        put_frame(r, keys, "cam-1")
        enqueue_request(r, keys, "alice", "cam-1", "r1", 30)
        deadline = time.time() + 20
        while not labels(r, keys) and time.time() < deadline:
            time.sleep(0.05)
        assert len(labels(r, keys)) == 1
        assert r.zscore(keys.live, "alice") is not None
    finally:
        stop.set()
        thread.join(timeout=20)
    assert not thread.is_alive()
    assert done == [0]
    assert r.zscore(keys.live, "alice") is None


def _cli(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "gtx_stream", "labeler", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigterm_finishes_the_current_job_then_exits_0(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n\n[[labelers]]\nid = "slow"\nbackend = "python"\n'
        f'target = "{FIX}:slow_parity"\n'
    )
    put_frame(r, keys, "cam-1", frame_index="1")
    job = enqueue_request(r, keys, "slow", "cam-1", "r1", 30)
    proc = _cli(config, "--id", "slow", env={SLEEP_VARIABLE: "1.5"})
    try:
        started = StartedJobRegistry(keys.queue("slow"), connection=r).key
        deadline = time.time() + 30
        while not r.zcard(started) and time.time() < deadline:  # the job is running
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.02)
        assert r.zcard(started) == 1
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert [(e["frame_id"], e["label"], e["request_id"]) for e in labels(r, keys)] == [
        ("cam-1", "1", "r1")
    ]
    assert not r.exists(f"rq:job:{job.id}")
    assert r.zscore(keys.live, "slow") is None


def test_cli_unknown_id_is_a_one_line_error(redis_url: str, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n')
    proc = _cli(config, "--id", "nobody")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert (
        out.strip() == "config error: labeler 'nobody' is not in labelers (known: none configured)"
    )


def test_a_plain_rq_worker_builds_the_labeler_from_settings(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `rq worker --serializer json -w rq.worker.SimpleWorker` instead of `gtx-stream labeler`
    config = tmp_path / "config.toml"
    config.write_text(
        '[[labelers]]\nid = "alice"\nbackend = "simulated"\naccuracy = 0.7\nseed = 5\n'
    )
    monkeypatch.setenv("GTX_CONFIG", str(config))
    monkeypatch.setattr(job_module, "_fallback", None)
    put_frame(r, keys, "cam-1", truth=0)
    enqueue_request(r, keys, "alice", "cam-1", "r1", 30)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        SimpleWorker(
            [keys.queue("alice")],
            connection=redis.Redis.from_url(redis_url),
            serializer=JSONSerializer,
        ).work(burst=True)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    [entry] = labels(r, keys)
    assert int(entry["label"]) == simulated_label(5, "cam-1", "alice", 0, 0.7)
    assert rq_job_keys(r) == []


def test_ctrl_c_on_an_idle_worker_exits_0(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n\n[[labelers]]\nid = "a"\naccuracy = 0.8\n\n'
        '[[labelers]]\nid = "b"\naccuracy = 0.9\n'
    )
    proc = _cli(config, "--all")
    try:
        deadline = time.time() + 30
        while r.zcard(keys.live) < 2 and time.time() < deadline:
            assert proc.poll() is None, proc.communicate()[0]
            time.sleep(0.02)
        assert set(r.zrange(keys.live, 0, -1)) == {"a", "b"}
        time.sleep(0.3)  # let it reach the blocking wait for jobs
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert r.zcard(keys.live) == 0


# --- one worker, several labelers: every one is served ---------------------------------------


def _live(r: redis.Redis, keys: Keys, proc: subprocess.Popen[str], n: int) -> None:
    deadline = time.time() + 30
    while r.zcard(keys.live) < n:
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "the worker never stamped its labelers live"
        time.sleep(0.02)


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def test_every_labeler_of_one_worker_is_answered_within_its_lease(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """`labeler --id slow --id a --id b` under a steady stream of requests to all three.

    The slow labeler (0.1 s a frame) gets requests faster than it answers, so its queue never
    empties: one RQ worker for the three queues, which takes from the first non-empty one,
    answered neither ``a`` nor ``b`` until the stream stopped. Each labeler is served on its
    own, and the slow one holds up nobody.
    """
    lease, feed_seconds, every = 4.0, 3.0, 0.05
    config = tmp_path / "config.toml"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\n\n'
        f'[[labelers]]\nid = "slow"\nbackend = "python"\ntarget = "{FIX}:slow_parity"\n\n'
        '[[labelers]]\nid = "a"\naccuracy = 0.8\n\n[[labelers]]\nid = "b"\naccuracy = 0.7\n'
    )
    proc = _cli(config, "--id", "slow", "--id", "a", "--id", "b", env={SLEEP_VARIABLE: "0.1"})
    try:
        _live(r, keys, proc, 3)
        asked: dict[str, float] = {}  # request id -> when it was enqueued
        started = time.time()
        i = 0
        while time.time() - started < feed_seconds:
            put_frame(r, keys, f"cam-{i}", frame_index=str(i))
            reqs = [LabelRequest(lab, f"cam-{i}", f"cam-{i}.{lab}") for lab in ("slow", "a", "b")]
            enqueue_requests(r, keys, reqs, lease_seconds=lease)
            for req in reqs:
                asked[req.request_id] = time.time()
            i += 1
            time.sleep(every)
        backlog = r.llen(Queue(keys.queue("slow"), connection=r).key)
        fast = [rid for rid in asked if not rid.endswith(".slow")]
        deadline = time.time() + 30
        while True:
            answered = {e["request_id"]: float(e["labeled_at"]) for e in labels(r, keys)}
            if all(rid in answered for rid in fast) or time.time() > deadline:
                break
            time.sleep(0.05)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0, out
    assert backlog > 0, "the slow labeler kept up: the test did not load it"
    late = {rid: answered.get(rid, float("inf")) - asked[rid] for rid in fast}
    late = {rid: wait for rid, wait in late.items() if wait > lease}
    assert not late, f"{len(late)} of {len(fast)} requests of a and b not answered in {lease} s"
    assert sum(rid.endswith(".slow") for rid in answered) > 0  # the slow one is served too


# --- failed requests are reported at once ----------------------------------------------------

FAILURES = {
    # labeler: (settings, what its failed entry says)
    "crash": ({"target": f"{FIX}:explode"}, "raised RuntimeError: model crashed"),
    "garbage": ({"target": f"{FIX}:answer_yes"}, "returned 'yes', not 0 or 1"),
    "own-timeout": ({"target": f"{FIX}:slow_parity", "timeout": 0.3}, "no answer within 0.3 s"),
    "job-timeout": ({"target": f"{FIX}:slow_parity", "timeout": 30}, "job timeout (1 s)"),
}


@pytest.mark.parametrize("labeler", sorted(FAILURES))
def test_a_failed_request_is_reported_at_once(
    redis_url: str, r: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch, labeler: str
) -> None:
    """A backend error, a timeout (the backend's own, or RQ's job timeout: the lease) or a
    garbage answer is a failed entry on the labels stream, for that request, and the RQ job
    fails too; the worker goes on with the next request."""
    extra, message = FAILURES[labeler]
    monkeypatch.setenv(SLEEP_VARIABLE, "20")  # far longer than the 1-s lease of these requests
    put_frame(r, keys, "cam-1")
    put_frame(r, keys, "cam-2")
    asked = time.time()
    failing = enqueue_request(r, keys, labeler, "cam-1", "r-bad", lease_seconds=1)
    enqueue_request(r, keys, "alice", "cam-2", "r-good", lease_seconds=1)
    lab = {"id": labeler, "backend": "python", **extra}
    settings = settings_for(redis_url, lab, SIM)
    assert run_labeler_worker(settings, [labeler, "alice"], burst=True) == 0
    entries = {e["request_id"]: LabelEntry.from_fields(e) for e in labels(r, keys)}
    assert sorted(entries) == ["r-bad", "r-good"]
    bad = entries["r-bad"]
    assert (bad.frame_id, bad.labeler, bad.failed) == ("cam-1", labeler, True)
    assert f"labeler {labeler}, frame cam-1: " in bad.reason and message in bad.reason, bad.reason
    # at once: RQ's job timeout too interrupts the call in hand, not only once it returns
    assert bad.labeled_at - asked < 10
    assert entries["r-good"].label == simulated_label(5, "cam-2", "alice", 1, 0.7)
    failed = FailedJobRegistry(keys.queue(labeler), connection=r, serializer=JSONSerializer)
    assert failed.get_job_ids() == [failing.id]
