"""What a label costs in Redis commands, pinned on a fixed scenario (issue 12, point 2).

A redis-server of the test's own counts every command (``INFO commandstats``, the commands
Lua scripts run included) while frames are opened (``open_frame.lua``), an in-process
aggregator applies, decides, asks (``ask.lua``, real RQ jobs, packed up to each labeler's
``batch``) and finalises, and the labelers' job function (:func:`label_frame`, with simulated
backends) answers. RQ's own bookkeeping per job (some 60 commands for a worker to run one,
measured by ``benchmarks/bench_batch.py``) is left out: here each job is taken off its queue
as RQ would hand it (``LPOP``, ``HGET`` of its data, ``DEL``), and those commands, like the
test's own, are not counted. Everything else is: a command added to a label's path fails
the pin.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job

from gtx_stream.config import AggregatorSettings, RetentionSettings
from gtx_stream.core.records import LabelEntry, LabelRequest, decode_fields
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.label.backends import SimulatedBackend
from gtx_stream.pipeline.label.batch import queue_key, requests_of, take_requests
from gtx_stream.pipeline.label.job import WorkerContext, label_frame, set_context
from gtx_stream.pipeline.label.requests import enqueue_requests, job_args
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import final_records, open_frame, register

pytestmark = pytest.mark.redis

LABELERS = {f"sim-{i}": 0.9 for i in range(5)}
N_FRAMES = 48


@pytest.fixture
def own(redis_server: str) -> Iterator[redis.Redis]:
    """A redis-server of this test's own: ``INFO commandstats`` counts nobody else."""
    with EmbeddedRedis() as server:
        yield redis.Redis.from_url(server.url)


def _calls(r: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def run_scenario(r: redis.Redis, batch: int) -> dict[str, float]:
    """48 frames (truth: parity), 5 simulated labelers of accuracy 0.9, tau 0.99, kappa 5,
    one request per frame at a time; every labeler at ``batch``. Returns the labels, the
    jobs RQ would have handed out, and the commands counted."""
    keys = Keys("cmd")
    register(r, keys, LABELERS)
    settings = AggregatorSettings(sweep_seconds=3600.0, seed=0)  # no sweep after the first
    agg = Aggregator(r, keys, settings, consumer="a1",
                     retention=RetentionSettings(enabled=False),
                     labeler_batches=dict.fromkeys(LABELERS, batch))  # fmt: skip
    agg.setup()
    ctx = WorkerContext(r, {lab: SimulatedBackend(lab, acc, seed=0, batch=batch)
                            for lab, acc in LABELERS.items()})  # fmt: skip
    set_context(ctx)
    not_counted = 0
    jobs = 0
    try:
        r.config_resetstat()
        for i in range(N_FRAMES):
            open_frame(r, keys, i, i % 2)
        for _ in range(200):
            agg.step(block_ms=1)
            for lab in LABELERS:
                while True:  # as RQ hands a worker its jobs, one at a time
                    jid = r.lpop(queue_key(keys, lab))
                    not_counted += 1
                    if jid is None:
                        break
                    key = Job.redis_job_namespace_prefix + jid.decode()
                    data = r.hget(key, "data")
                    r.delete(key)
                    not_counted += 2
                    jobs += 1
                    _, _, args, _ = json.loads(zlib.decompress(data))
                    label_frame(*args)
            not_counted += 1
            if r.zcard(keys.open_frames) == 0:
                break
        calls = _calls(r)
    finally:
        set_context(None)
    not_counted += 1  # the INFO
    records = final_records(r, keys)
    assert len(records) == N_FRAMES and r.xlen(keys.dead) == 0
    labels = sum(int(f["n_labels"]) for f in records)
    return {
        "labels": labels,
        "jobs": jobs,
        "commands": sum(calls.values()) - not_counted - calls.get("config|resetstat", 0),
    }


def test_a_label_costs_at_most_its_pinned_commands(own: redis.Redis) -> None:
    """19.5 commands per label at batch 16 and 22.0 at batch 1 here; the same scenario on the
    code before issue 12's point 2 was worked on costs 42.0 and 40.8 (ask.lua and
    apply_labels.lua then read and wrote per label what they now do once per call, and
    finalise.lua per frame). The bounds leave 3% for what depends on time (the aggregator
    reads the labelers' parameters again once a second)."""
    at16 = run_scenario(own, 16)
    own.flushall()
    at1 = run_scenario(own, 1)
    assert at16["labels"] == at1["labels"] == 174  # the scenario is fixed: the same labels
    assert at16["commands"] / at16["labels"] <= 20.1, at16
    assert at1["commands"] / at1["labels"] <= 22.6, at1
    assert at16["jobs"] <= at1["jobs"] / 4  # batches: far fewer jobs for RQ to hand out


# --- packing ------------------------------------------------------------------------------


def _reqs(n: int, labeler: str = "m", prefix: str = "gtx") -> list[LabelRequest]:
    return [LabelRequest(labeler, f"cam-{i}", f"{labeler}-r{i}", prefix) for i in range(n)]


def test_requests_are_packed_into_jobs_of_the_labelers_batch(redis_url: str, keys: Keys) -> None:
    r = redis.Redis.from_url(redis_url)  # job data is zlib bytes
    reqs = _reqs(10, prefix=keys.prefix)
    other = _reqs(2, labeler="alone", prefix=keys.prefix)
    jobs = enqueue_requests(r, keys, reqs + other, 30, batches={"m": 4})
    assert [len(requests_of(r.hget(job.key, "data"))) for job in jobs] == [4, 4, 2, 1, 1]
    assert r.llen(queue_key(keys, "m")) == 3 and r.llen(queue_key(keys, "alone")) == 2
    assert job_args(reqs[:2]) == ["cam-0", "m", "m-r0", keys.prefix, "cam-1", "m-r1"]
    with pytest.raises(ValueError, match="one labeler"):
        job_args([reqs[0], other[0]])
    assert take_requests(r, keys, "m", 16) == reqs  # in order, every request its own
    # the jobs taken are deleted, the other labeler's are not
    assert [bool(r.exists(j.key)) for j in jobs] == [False] * 3 + [True] * 2


def test_a_job_that_would_overfill_the_batch_goes_back_with_what_does_not_fit(
    redis_url: str, keys: Keys
) -> None:
    r = redis.Redis.from_url(redis_url)
    reqs = _reqs(7, prefix=keys.prefix)
    jobs = enqueue_requests(r, keys, reqs, 30, batches={"m": 3})  # jobs of 3, 3, 1
    assert take_requests(r, keys, "m", 4) == reqs[:4]  # one request of the second job fits
    assert [j.decode() for j in r.lrange(queue_key(keys, "m"), 0, -1)] == [
        jobs[1].id, jobs[2].id
    ]  # fmt: skip
    assert not r.exists(jobs[0].key)
    assert requests_of(r.hget(jobs[1].key, "data")) == reqs[4:6]  # the rest, in its job
    assert take_requests(r, keys, "m", 3) == reqs[4:]
    assert r.llen(queue_key(keys, "m")) == 0
    assert not any(r.exists(j.key) for j in jobs)


def test_a_packed_job_answers_each_request_with_its_own_entry(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    raw = redis.Redis.from_url(redis_url)  # a labeler's client does not decode
    register(r, keys, {"m": 1.0})
    fids = [open_frame(r, keys, i, i % 2) for i in range(3)]
    reqs = [LabelRequest("m", fid, f"rid-{fid}", keys.prefix) for fid in fids]
    set_context(WorkerContext(raw, {"m": SimulatedBackend("m", 1.0, batch=4)}))
    try:
        assert label_frame(*job_args(reqs)) == 0
    finally:
        set_context(None)
    got = [LabelEntry.from_fields(decode_fields(f)) for _, f in r.xrange(keys.labels)]
    assert [(e.frame_id, e.request_id, e.label) for e in got] == [
        (fid, f"rid-{fid}", i % 2) for i, fid in enumerate(fids)
    ]  # fmt: skip


def test_the_labelers_acl_user_may_split_and_put_back_packed_jobs(tmp_path: Path) -> None:
    """Under docs/access.md's users: the aggregator enqueues packed jobs, a labeler takes
    what fits and puts back, rewritten, the job that would overfill its batch."""
    from tests.store.test_access import start_server

    server = start_server(tmp_path, tls=False)
    try:
        keys = Keys("gtx")
        reqs = _reqs(4, prefix=keys.prefix)
        enqueue_requests(server.client("gtx-aggregator"), keys, reqs, 30, batches={"m": 2})
        labeler = server.client("gtx-labeler")
        assert take_requests(labeler, keys, "m", 3) == reqs[:3]
        assert labeler.llen(queue_key(keys, "m")) == 1  # the second job, with its last request
        assert take_requests(labeler, keys, "m", 3) == reqs[3:]
    finally:
        server.embedded.stop()
