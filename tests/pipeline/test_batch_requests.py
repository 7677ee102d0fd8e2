"""Batched requests for machine labelers, against a real Redis (and real worker processes).

A labeler with ``batch > 1`` answers up to ``batch`` requests in one RQ job, with one backend
call; each request keeps its own id, its own lease and its own entry (invariant 3), and a
worker killed mid-batch loses nothing (invariant 2).
"""

from __future__ import annotations

import json
import os
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from gtx_stream.config import AggregatorSettings, ConfigError, Settings, load_settings
from gtx_stream.core.records import (
    DeadLetter,
    LabelEntry,
    LabelRequest,
    RequestState,
    decode_fields,
)
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.aggregate.intake import DEAD_REASONS
from gtx_stream.pipeline.label.batch import queue_key, request_of, take_requests
from gtx_stream.pipeline.label.job import SESSION_SECONDS, WorkerContext, _session_goes_on
from gtx_stream.pipeline.label.requests import LABEL_FRAME, enqueue_requests, job_id
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import final_records as agg_final_records
from tests.aggregator_harness import open_frame, register
from tests.pipeline_fixtures import check_final_records, final_records, pipeline

HERE = "tests.pipeline.test_batch_requests"
BATCH_DIR = "GTX_TEST_BATCH_DIR"
"""Where :func:`parity_batch` writes each batch's frame ids (reaches worker processes)."""
BATCH_SLEEP = "GTX_TEST_BATCH_SLEEP"
"""Seconds :func:`parity_batch` sleeps after writing them."""

batches: list[list[str]] = []
"""The frame ids of each batch the functions below were handed, in this process."""
release = threading.Event()
""":func:`held_batch` answers once this is set."""


# --- batch functions for the python backend (target "tests.pipeline.test_batch_requests:NAME")


def parity_batch(images: list[np.ndarray], metadatas: list[dict[str, str]]) -> list[int]:
    """The parity of each frame index; with the two variables set, records and sleeps."""
    ids = [m["frame_id"] for m in metadatas]
    batches.append(ids)
    folder = os.environ.get(BATCH_DIR)
    if folder:
        (Path(folder) / f"{os.getpid()}-{len(batches)}.json").write_text(json.dumps(ids))
    time.sleep(float(os.environ.get(BATCH_SLEEP, "0")))
    return [int(m["frame_index"]) % 2 for m in metadatas]


def odd_fails(images: list[np.ndarray], metadatas: list[dict[str, str]]) -> list[Any]:
    """1 for even frame indexes, None (no label) for odd ones."""
    batches.append([m["frame_id"] for m in metadatas])
    return [None if int(m["frame_index"]) % 2 else 1 for m in metadatas]


def crash_batch(images: list[np.ndarray], metadatas: list[dict[str, str]]) -> list[int]:
    batches.append([m["frame_id"] for m in metadatas])
    raise RuntimeError("the model ran out of memory")


def held_batch(images: list[np.ndarray], metadatas: list[dict[str, str]]) -> list[int]:
    """Answers 1 for each frame once :data:`release` is set (at most 5 s)."""
    batches.append([m["frame_id"] for m in metadatas])
    release.wait(5)
    return [1] * len(metadatas)


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    batches.clear()
    release.clear()
    yield
    release.set()


def model(target: str, batch: int = 4, **extra: Any) -> dict[str, Any]:
    return {"id": "m", "backend": "python", "target": f"{HERE}:{target}", "batch": batch, **extra}


def put_frame(r: redis.Redis, keys: Keys, frame_id: str, index: int, state: str = "open") -> None:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 200, dtype=np.uint8))
    assert ok
    fields = {"state": state, "source": "cam", "frame_index": str(index), "truth": "1"}
    r.hset(keys.frame(frame_id), mapping=fields)
    r.set(keys.image(frame_id), buf.tobytes())


def ask(r: redis.Redis, keys: Keys, n: int, labeler: str = "m") -> list[LabelRequest]:
    """``n`` open frames and one request for each, enqueued as RQ jobs, in order."""
    reqs = []
    for i in range(n):
        put_frame(r, keys, f"cam-{i}", i)
        reqs.append(LabelRequest(labeler, f"cam-{i}", f"r{i}", keys.prefix))
    enqueue_requests(r, keys, reqs, lease_seconds=30)
    return reqs


def serve(url: str, *labelers: dict[str, Any]) -> int:
    """Serve the queues in burst mode: until they are empty."""
    settings = Settings(redis={"url": url}, labelers=list(labelers))
    return run_labeler_worker(settings, [lab["id"] for lab in labelers], burst=True)


def entries(r: redis.Redis, keys: Keys) -> list[LabelEntry]:
    return [LabelEntry.from_fields(decode_fields(f)) for _, f in r.xrange(keys.labels)]


# --- one job, many requests --------------------------------------------------------------


def test_a_batch_is_one_rq_job_and_each_request_gets_its_own_entry(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    reqs = ask(r, keys, 10)
    r.delete(keys.frame("cam-3"))  # gone meanwhile: its request is dropped, not labeled
    assert serve(redis_url, model("parity_batch", batch=4)) == 0
    # one backend call per batch; a batch is what waits when the worker takes a job
    assert [len(b) for b in batches] == [3, 4, 2]  # cam-3 was in the first: dropped
    got = {e.request_id: e for e in entries(r, keys)}
    assert sorted(got) == sorted(req.request_id for req in reqs if req.frame_id != "cam-3")
    for req in reqs:
        if req.frame_id != "cam-3":
            e = got[req.request_id]
            assert (e.frame_id, e.labeler) == (req.frame_id, "m")
            assert e.label == int(req.frame_id.split("-")[1]) % 2
    assert list(r.scan_iter("rq:job:*")) == [] and r.llen(queue_key(keys, "m")) == 0


def test_one_rq_job_goes_on_serving_the_requests_that_keep_coming(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    """A session: the job that took the first batch takes the next one, enqueued while it ran,
    so RQ's own bookkeeping is paid once for both."""
    first = ask(r, keys, 2)
    later = [LabelRequest("m", f"cam-{i}", f"r{i}", keys.prefix) for i in range(2, 6)]
    for req in later:
        put_frame(r, keys, req.frame_id, int(req.frame_id.split("-")[1]))

    def enqueue_later() -> None:
        time.sleep(0.1)  # within SESSION_IDLE_SECONDS of the first batch's end
        enqueue_requests(r, keys, later, lease_seconds=30)

    r.config_resetstat()
    feeder = threading.Thread(target=enqueue_later)
    feeder.start()
    assert serve(redis_url, model("parity_batch", batch=4)) == 0
    feeder.join()
    assert [len(b) for b in batches] == [2, 4]
    assert sorted(e.request_id for e in entries(r, keys)) == sorted(
        req.request_id for req in first + later
    )
    stats = r.info("commandstats")
    rq_jobs = sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("blmove", "lmove"))
    assert rq_jobs == 2  # the one job RQ ran, and the empty dequeue that ended burst mode
    assert list(r.scan_iter("rq:job:*")) == [] and r.llen(queue_key(keys, "m")) == 0


def test_a_batch_with_a_failure_ends_its_session(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    reqs = ask(r, keys, 8)
    assert serve(redis_url, model("odd_fails")) == 0
    assert [len(b) for b in batches] == [4, 4]
    assert len(entries(r, keys)) == 8
    # the first batch failed its job, so the second came in a job of its own (failed too)
    failed = FailedJobRegistry(keys.queue("m"), connection=r, serializer=JSONSerializer)
    assert sorted(failed.get_job_ids()) == sorted(
        job_id(keys.prefix, reqs[i].request_id) for i in (0, 4)
    )


def test_a_session_ends_well_within_the_job_timeout() -> None:
    ctx = WorkerContext(client=None)  # type: ignore[arg-type]
    now = time.monotonic()
    assert _session_goes_on(ctx, now, 0.0, None)
    assert not _session_goes_on(ctx, now - SESSION_SECONDS, 0.0, None)
    # a 1 s job timeout: the session ends by 0.5 s, and earlier after a slow batch
    assert _session_goes_on(ctx, now - 0.3, 0.05, 1.0)
    assert not _session_goes_on(ctx, now - 0.3, 0.1, 1.0)
    ctx.stop.set()
    assert not _session_goes_on(ctx, now, 0.0, None)


def test_batch_one_keeps_one_request_per_job(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    ask(r, keys, 3)
    r.config_resetstat()
    lab = {"id": "m", "backend": "simulated", "accuracy": 0.9, "seed": 1}
    assert serve(redis_url, lab) == 0
    assert len(entries(r, keys)) == 3
    # three jobs, each dequeued by RQ (its BLMOVE/LMOVE): nothing was taken behind RQ's back
    assert r.info("commandstats").get("cmdstat_lpop") is None


def test_one_frame_failing_in_a_batch_fails_alone(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    reqs = ask(r, keys, 4)
    assert serve(redis_url, model("odd_fails")) == 0
    got = {e.frame_id: e for e in entries(r, keys)}
    assert [got[f"cam-{i}"].label for i in (0, 2)] == [1, 1]
    for i in (1, 3):
        e = got[f"cam-{i}"]
        assert e.failed and f"frame cam-{i}" in e.reason and "None" in e.reason
    # the one job that carried the batch failed, saying how many of its requests did
    failed = FailedJobRegistry(keys.queue("m"), connection=r, serializer=JSONSerializer)
    assert failed.get_job_ids() == [job_id(keys.prefix, reqs[0].request_id)]
    raw = redis.Redis.from_url(redis_url)
    result = Job.fetch(failed.get_job_ids()[0], connection=raw,
                       serializer=JSONSerializer).latest_result()  # fmt: skip
    assert result is not None and result.exc_string is not None
    assert "2 of 4 requests of the batch failed" in result.exc_string


def test_a_batch_call_that_raises_fails_every_frame_of_it(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    ask(r, keys, 3)
    assert serve(redis_url, model("crash_batch")) == 0
    got = entries(r, keys)
    assert len(got) == 3 and all(e.failed for e in got)
    assert all("batch of 3 frames" in e.reason and "out of memory" in e.reason for e in got)


def test_other_jobs_in_the_queue_are_dropped_not_run(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    raw = redis.Redis.from_url(redis_url)
    queue = Queue(keys.queue("m"), connection=raw, serializer=JSONSerializer)
    put_frame(r, keys, "cam-0", 0)
    enqueue_requests(r, keys, [LabelRequest("m", "cam-0", "r0", keys.prefix)], 30)
    marker = tmp_path / "ran"
    queue.enqueue("os.mkdir", str(marker))  # behind the request: taken with it, never run
    enqueue_requests(r, keys, [LabelRequest("other", "cam-0", "r1", keys.prefix)], 30)
    raw.rpush(queue.key, raw.lpop(Queue(keys.queue("other"), connection=raw).key))
    assert serve(redis_url, model("parity_batch")) == 0
    assert not marker.exists()
    assert [e.request_id for e in entries(r, keys)] == ["r0"]
    assert list(r.scan_iter("rq:job:*")) == []


def test_request_of_reads_only_plain_label_requests() -> None:
    def data(func: str, args: list[Any], kwargs: dict[str, Any] | None = None) -> bytes:
        return zlib.compress(json.dumps([func, None, args, kwargs or {}]).encode())

    req = request_of(data(LABEL_FRAME, ["cam-1", "m", "r1", "gtx"]))
    assert req == LabelRequest("m", "cam-1", "r1", "gtx")
    for bad in (data("os.system", ["rm -rf /"]), data(LABEL_FRAME, ["cam-1", "m", "r1"]),
                data(LABEL_FRAME, ["cam-1", "m", "r1", "gtx"], {"x": 1}), b"not zlib"):  # fmt: skip
        with pytest.raises(Exception, match="label request|JSON job|4 strings"):
            request_of(bad)


def test_take_requests_takes_at_most_count(redis_url: str, r: redis.Redis, keys: Keys) -> None:
    reqs = ask(r, keys, 5)
    raw = redis.Redis.from_url(redis_url)
    assert take_requests(raw, keys, "m", 0) == []
    assert take_requests(raw, keys, "m", 3) == reqs[:3]
    assert take_requests(raw, keys, "m", 10) == reqs[3:]
    assert take_requests(raw, keys, "m", 10) == []


# --- the setting ---------------------------------------------------------------------------


def test_people_cannot_take_batches(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[[labelers]]\nid = "alice"\nbackend = "human"\nbatch = 4\n')
    with pytest.raises(ConfigError) as err:
        load_settings(toml)
    message = str(err.value)
    assert "\n" not in message and "labelers.0.batch" in message
    assert "human labeler 'alice' takes one frame per request: batch must be 1" in message
    toml.write_text('[[labelers]]\nid = "m"\nbackend = "python"\ntarget = "a:b"\nbatch = 0\n')
    with pytest.raises(ConfigError, match="labelers.0.batch"):
        load_settings(toml)


# --- leases: a late batch counts once ------------------------------------------------------


def test_a_late_batch_counts_once_for_each_frame(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    """Invariant 3: answers that come after their leases ran out are applied once each; the
    same entries delivered again change nothing."""
    raw = redis.Redis.from_url(redis_url)
    register(r, keys, {"m": 0.9})
    register(r, keys, {"s": 0.7}, live=False)  # nobody else is live: the frames wait for m
    fids = [open_frame(r, keys, i, 1) for i in range(3)]
    for fid in fids:  # a JPEG the model can decode
        r.set(keys.image(fid), cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    settings = AggregatorSettings(tau=0.999999, kappa=5, sweep_seconds=0.05)  # type: ignore[call-arg]

    # a lease of 1.2 s gives RQ's job a timeout of 2 s: the batch is late, not killed
    def enqueue(_: Any, k: Keys, reqs: Any, lease: float) -> None:
        enqueue_requests(raw, k, reqs, lease)

    agg = Aggregator(r, keys, settings, consumer="a1", lease_seconds=1.2, enqueue=enqueue)
    agg.setup()
    stop = threading.Event()
    worker = threading.Thread(
        target=run_labeler_worker,
        args=(Settings(redis={"url": redis_url}, labelers=[model("held_batch")]), ["m"]),
        kwargs={"stop_event": stop},
        daemon=True,
    )
    worker.start()
    try:

        def states() -> list[RequestState]:
            return [RequestState.decode(r.hget(keys.frame_requests(f), "m")) for f in fids]

        deadline = time.monotonic() + 10
        while not (batches and all(s.state == "late" for s in states())):
            assert time.monotonic() < deadline, (batches, states())
            agg.step(block_ms=10)
        assert [sorted(b) for b in batches] == [sorted(fids)]  # one batch, all three frames
        release.set()
        while len(entries(r, keys)) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        for e in entries(r, keys):  # delivered again: counted once all the same
            r.xadd(keys.labels, e.to_fields())  # type: ignore[arg-type]
        for _ in range(5):
            agg.step(block_ms=10)
    finally:
        stop.set()
        worker.join(10)
    stats = r.hgetall(keys.stats)
    assert int(stats["leases_expired"]) == 3
    assert int(stats["labels_applied"]) == 3
    for fid in fids:
        labels = [json.loads(x) for x in r.lrange(keys.frame_labels(fid), 0, -1)]
        assert labels == [["m", 1]]
        assert RequestState.decode(r.hget(keys.frame_requests(fid), "m")).state == "done"
    assert agg_final_records(r, keys) == []  # still open: waiting for s, who is not live


# --- a worker killed mid-batch -------------------------------------------------------------

N_FRAMES = 12
TAU, KAPPA = 0.99, 3


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(tmp_path: Path, redis_url: str) -> None:
    """Invariant 2: SIGKILL while a batch is in the model. Each of its frames is asked of
    another labeler when its lease runs out; every frame is finalised exactly once."""
    video = tmp_path / "line.avi"
    write_truth_csv(tmp_path / "truth.csv", write_synthetic_video(video, N_FRAMES, seed=3))
    seen = tmp_path / "batches"
    seen.mkdir()
    labelers = [
        model("parity_batch", batch=4, accuracy=0.9, lease_seconds=2.0),
        {"id": "s1", "backend": "simulated", "accuracy": 0.85, "seed": 3, "batch": 4},
        {"id": "s2", "backend": "simulated", "accuracy": 0.8, "seed": 3},
    ]
    agg = {"tau": TAU, "kappa": KAPPA, "seed": 3, "max_open_frames": N_FRAMES,
           "sweep_seconds": 0.2}  # fmt: skip
    with pipeline(tmp_path, redis_url, aggregator=agg, labelers=labelers) as p:
        p.sup.env.update({BATCH_DIR: str(seen), BATCH_SLEEP: "60"})
        p.start("aggregator", "aggregator")
        p.wait_aggregator_group()
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        p.wait_until(lambda: p.client.zcard(p.keys.open_frames) == N_FRAMES, "frames open", 60)
        # m is the first labeler live: every frame is asked of it at once, and its first job
        # takes the requests behind it
        p.start("model", "labeler", "--id", "m")
        p.wait_until(lambda: any(seen.iterdir()), "m to take a batch", 60)
        p.sup.kill("model")  # mid-batch: in the model's call, nothing sent
        (killed,) = [json.loads(f.read_text()) for f in seen.iterdir()]
        p.sup.env[BATCH_SLEEP] = "0"
        p.start("simulated", "labeler", "--id", "s1", "--id", "s2")
        p.start("model", "labeler", "--id", "m")  # restarted, under the same name
        p.wait_until(lambda: p.finished(N_FRAMES), f"{N_FRAMES} frames final", 120)
        r, keys = p.client, p.keys
        records = final_records(r, keys)
        dead = [DeadLetter.from_fields(decode_fields(f)) for _, f in r.xrange(keys.dead)]
        stats = r.hgetall(keys.stats)
        requests = {f: r.hgetall(keys.frame_requests(f)) for f in killed}
        arrived = [LabelEntry.from_fields(decode_fields(f)) for _, f in r.xrange(keys.labels)]

    assert 2 <= len(killed) <= 4
    assert sorted(int(f["frame_index"]) for f in records) == list(range(N_FRAMES))
    # no label lost or refused for another cause: the one dead letter allowed is a late answer
    # (of a request the restarted m found still queued from before the kill) to a frame that
    # others had finalised meanwhile
    for letter in dead:
        assert letter.reason == DEAD_REASONS["finalised"], letter
        assert json.loads(letter.payload)["labeler"] == "m", letter
    check_final_records(records, TAU, KAPPA)
    assert int(stats["leases_expired"]) >= len(killed)
    for fid in killed:  # never answered: its lease ran out, and others were asked instead
        assert RequestState.decode(requests[fid]["m"]).state == "late"
        assert not [e for e in arrived if e.frame_id == fid and e.labeler == "m"]
    # every label that arrived was counted once, in its frame's record
    by_frame = {f["frame_id"]: f for f in records}
    counted = sorted((fid, lab) for fid, f in by_frame.items() for lab in json.loads(f["labelers"]))
    applied = sorted({(e.frame_id, e.labeler) for e in arrived if not e.failed
                      and (e.frame_id, e.labeler) in set(counted)})  # fmt: skip
    assert counted == applied
    assert int(stats["labels_applied"]) == len(counted)
