"""Requests recorded by ``ask.lua`` and never enqueued are sent by a later sweep
(``gtx_stream.store.unsent``): an aggregator killed between the two steps, or an enqueue
refused by a queue Redis that is down, no longer leaves a label of budget paid for a request no
labeler sees. Against a real Redis; the kill is a real process killed with SIGKILL at the
enqueue."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence

import pytest
import redis
from rq import Queue

from gtx_stream.core.records import LabelRequest, RequestState
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.label.requests import job_id, jobs_exist
from gtx_stream.store import unsent
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    open_frame,
    register,
    run_until_idle,
)

ACC = {"a": 0.9, "b": 0.8, "c": 0.7}
LATER = unsent.GRACE_SECONDS + 1


class DownOnce(Capture):
    """An enqueue refused once (the queue Redis is down), then captured."""

    def __init__(self) -> None:
        super().__init__()
        self.refused: list[LabelRequest] = []

    def __call__(
        self, client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease: float
    ) -> None:
        if not self.refused:
            self.refused.extend(requests)
            raise redis.ConnectionError("queue Redis down")
        super().__call__(client, keys, requests, lease)


def _journal(r: redis.Redis, keys: Keys) -> list[unsent.Entry]:
    return unsent.read(r, keys)


def test_a_refused_enqueue_is_sent_by_a_later_sweep(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    frames = [open_frame(r, keys, i, i % 2) for i in range(6)]
    down = DownOnce()
    agg = make_aggregator(r, keys, down, tau=0.95, kappa=3, budget=100)
    with pytest.raises(redis.ConnectionError):
        agg.step(block_ms=1)
    assert len(down.refused) == 6  # one request per frame, recorded, none sent
    [entry] = _journal(r, keys)
    assert set(entry.requests) == set(down.refused)
    assert agg.requester.enqueued == []

    # younger than the grace: a step of this aggregator does not take it
    assert agg.requester.resend_unsent() == 0
    assert len(_journal(r, keys)) == 1
    assert agg.requester.resend_unsent(now=time.time() + LATER) == 6
    assert set(down.all) == set(down.refused) and len(down.all) == 6  # same ids, once each
    assert _journal(r, keys) == []

    run_until_idle(agg, r, keys, down, ACC)
    records = final_records(r, keys)
    assert sorted(rec["frame_id"] for rec in records) == sorted(frames)
    stats = r.hgetall(keys.stats)
    spent = int(r.hget(keys.budget, "spent") or 0)
    assert spent == int(stats["labels_applied"]) == sum(int(x["n_labels"]) for x in records)
    assert int(stats.get("leases_expired", 0)) == 0
    assert _journal(r, keys) == []


def test_the_grace_is_the_setting(r: redis.Redis, keys: Keys) -> None:
    """``aggregator.unsent_grace_seconds``: a sweep of the aggregator's own steps sends a
    refused enqueue once the entry is that old, and not before."""
    register(r, keys, ACC)
    for i in range(2):
        open_frame(r, keys, i, 1)
    down = DownOnce()
    agg = make_aggregator(r, keys, down, tau=0.95, kappa=3, unsent_grace_seconds=0.3)
    with pytest.raises(redis.ConnectionError):
        agg.step(block_ms=1)
    began = time.time()
    assert len(down.refused) == 2
    sent_at = None
    while sent_at is None and time.time() - began < 5:
        agg.step(block_ms=10)  # sweeps every 0.05 s (make_aggregator)
        if down.all:
            sent_at = time.time() - began
    assert sent_at is not None and sent_at >= 0.3
    assert set(down.all) == set(down.refused) and len(down.all) == 2
    assert _journal(r, keys) == []


def test_a_sweep_sends_only_what_is_unanswered_and_unsent(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    for i in range(3):
        open_frame(r, keys, i, 1)
    down = DownOnce()
    agg = make_aggregator(r, keys, down, tau=0.95, kappa=3)
    with pytest.raises(redis.ConnectionError):
        agg.step(block_ms=1)
    answered, enqueued, lost = sorted(down.refused, key=lambda q: q.frame_id)
    # one answered meanwhile (its label applied), one whose job exists: neither is sent again
    r.hset(keys.frame_requests(answered.frame_id), answered.labeler_id,
           RequestState("done", "1-0").encode())  # fmt: skip
    agg.requester.sent = lambda client, k, reqs: [q == enqueued for q in reqs]
    assert agg.requester.resend_unsent(now=time.time() + LATER) == 1
    assert down.all == [lost]
    assert _journal(r, keys) == []


def test_a_good_step_leaves_no_journal(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    for i in range(4):
        open_frame(r, keys, i, 0)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.95, kappa=3)
    agg.step(block_ms=1)
    assert len(cap.all) == 4
    assert r.exists(keys.unsent) == 0


def test_rq_jobs_tell_what_was_sent(r: redis.Redis, keys: Keys) -> None:
    from gtx_stream.pipeline.label.requests import enqueue_requests

    reqs = [LabelRequest("a", f"f{i}", f"req-{i}", keys.prefix) for i in range(3)]
    enqueue_requests(r, keys, reqs[:2], 10.0)
    assert jobs_exist(r, keys, reqs) == [True, True, False]


KILLED_AT_ENQUEUE = textwrap.dedent("""
    import os, signal, sys
    import redis
    from gtx_stream.config import AggregatorSettings
    from gtx_stream.pipeline.aggregate.aggregator import Aggregator
    from gtx_stream.store.keys import Keys

    def die(client, keys, requests, lease):
        print(len(requests), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    r = redis.Redis.from_url(sys.argv[1], decode_responses=True)
    agg = Aggregator(r, Keys("gtx"), AggregatorSettings(tau=0.95, kappa=3, budget=100),
                     consumer="doomed", enqueue=die)
    agg.setup()
    while True:
        agg.step(block_ms=50)
""")


def test_an_aggregator_killed_at_the_enqueue_loses_no_request(
    r: redis.Redis, keys: Keys, redis_url: str
) -> None:
    """A real aggregator process SIGKILLed between ``ask.lua`` and the RQ enqueue; a new
    aggregator's sweep enqueues its requests as RQ jobs, under the request ids recorded."""
    register(r, keys, ACC)
    frames = [open_frame(r, keys, i, 1) for i in range(5)]
    proc = subprocess.run([sys.executable, "-c", KILLED_AT_ENQUEUE, redis_url],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["5"]
    [entry] = _journal(r, keys)
    asked = {q.frame_id: q for q in entry.requests}
    assert sorted(asked) == sorted(frames)
    assert int(r.hget(keys.budget, "spent")) == 5
    for fid, q in asked.items():
        assert r.hget(keys.frame_requests(fid), q.labeler_id) == f"out:{q.request_id}"

    from gtx_stream.config import AggregatorSettings

    successor = Aggregator(r, keys, AggregatorSettings(tau=0.95, kappa=3), consumer="next")
    successor.setup(budget=100)
    assert successor.requester.resend_unsent(now=time.time() + LATER) == 5
    assert _journal(r, keys) == []
    queued = {jid for lab in ACC for jid in Queue(keys.queue(lab), connection=r).job_ids}
    assert queued == {job_id(keys.prefix, q.request_id) for q in asked.values()}
    # a second sweep finds nothing to send (and the jobs say they were sent)
    assert successor.requester.resend_unsent(now=time.time() + LATER) == 0
    assert int(r.hget(keys.budget, "spent")) == 5


def test_a_sharded_round_whose_flush_fails_is_sent_by_a_later_sweep(r: redis.Redis) -> None:
    """With shards the requests of a round are enqueued together after every shard's step; a
    refused flush leaves each shard's journal entry, confirmed only once really enqueued."""
    from gtx_stream.config import AggregatorSettings
    from gtx_stream.pipeline.aggregate.shards import ShardedAggregator

    keys = Keys("gtx", shards=2)
    register(r, keys, ACC)
    fids = [open_frame(r, keys, i, 1) for i in range(8)]
    assert {keys.of_frame(f).shard for f in fids} == {0, 1}
    down = DownOnce()
    s = AggregatorSettings(shards=2, sweep_seconds=0.05, block_ms=5, tau=0.95, kappa=3)
    agg = ShardedAggregator(r, Keys("gtx"), s, consumer="solo", enqueue=down)
    agg.setup()
    with pytest.raises(redis.ConnectionError):
        agg.step()
    assert len(down.refused) == 8
    journals = {k: _journal(r, shard) for k, shard in enumerate(keys.every_shard())}
    assert {k: len(e) for k, e in journals.items()} == {0: 1, 1: 1}
    assert all(a.requester.enqueued == [] for a in agg.owned.values())
    sent = sum(a.requester.resend_unsent(now=time.time() + LATER) for a in agg.owned.values())
    assert sent == 8 and down.all == []  # held for the round's flush
    agg._flush()
    assert set(down.all) == set(down.refused) and len(down.all) == 8
    assert all(_journal(r, shard) == [] for shard in keys.every_shard())


class SentThenDown(Capture):
    """Enqueues once, then raises before the journal is deleted: an aggregator killed in the
    instant between its enqueue and the delete (the one case that sends a second copy)."""

    def __init__(self) -> None:
        super().__init__()
        self.raised = False

    def __call__(
        self, client: redis.Redis, keys: Keys, requests: Sequence[LabelRequest], lease: float
    ) -> None:
        super().__call__(client, keys, requests, lease)
        if not self.raised:
            self.raised = True
            raise redis.ConnectionError("gone after the enqueue")


def test_a_second_copy_of_a_request_counts_its_label_once(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    frames = [open_frame(r, keys, i, 1) for i in range(6)]
    cap = SentThenDown()
    agg = make_aggregator(r, keys, cap, tau=0.95, kappa=3, budget=100)
    with pytest.raises(redis.ConnectionError):
        agg.step(block_ms=1)
    first = list(cap.pending)
    assert len(first) == 6 and len(_journal(r, keys)) == 1
    # no RQ to ask (sent=None): every unanswered request is sent again, under its own id
    assert agg.requester.resend_unsent(now=time.time() + LATER) == 6
    assert cap.pending == first + first
    run_until_idle(agg, r, keys, cap, ACC)  # both copies answered
    records = final_records(r, keys)
    assert sorted(rec["frame_id"] for rec in records) == sorted(frames)
    stats = r.hgetall(keys.stats)
    spent = int(r.hget(keys.budget, "spent") or 0)
    assert spent == int(stats["labels_applied"]) == sum(int(x["n_labels"]) for x in records)
    for rec in records:  # one label per labeler and frame
        labelers = json.loads(rec["labelers"])
        assert len(labelers) == len(set(labelers))
