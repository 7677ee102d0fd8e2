"""The human backend in the pipeline: per-labeler leases, a page that stops beating loses its
frame to someone else, skips never back a person off, labeler workers leave people alone."""

from __future__ import annotations

import time

import pytest
import redis

from gtx_stream.config import ConfigError, LabelerSettings, Settings
from gtx_stream.core.records import SKIPPED_REASON
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    make_aggregator,
    open_frame,
    post_failure,
    register,
    run_until_idle,
)
from tests.server.conftest import build_pipeline, make_settings, open_frames


def test_leases_are_per_labeler_120_s_for_people_by_default() -> None:
    s = Settings(labelers=[LabelerSettings(id="p", backend="human"),
                           LabelerSettings(id="q", backend="human", lease_seconds=5),
                           LabelerSettings(id="m", accuracy=0.8)])  # fmt: skip
    assert s.labeler_leases() == {"p": 120.0, "q": 5.0, "m": s.aggregator.lease_seconds}


def test_the_aggregator_gives_each_request_its_labelers_lease(r: redis.Redis, keys: Keys) -> None:
    capture = Capture()
    agg = make_aggregator(r, keys, capture, kappa=1)
    agg.requester.labeler_leases = {"person": 120.0}
    register(r, keys, {"person": 0.9})
    open_frame(r, keys, 0, truth=1)
    before = time.time()
    agg.step(block_ms=1)
    ((member, deadline),) = r.zrange(keys.leases, 0, -1, withscores=True)
    assert member.endswith("|person") and 119 < deadline - before < 121


def test_a_page_that_stops_beating_loses_its_frame_to_someone_else(raw: redis.Redis) -> None:
    settings = make_settings(live_seconds=0.3)
    settings.labelers[0].lease_seconds = 0.4  # alice
    p = build_pipeline(raw, settings, ["alice", "bob"])
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 1)
    p.step(2, machines=False)
    held = alice.next()
    assert held is not None  # alice holds it, then closes her page
    bob = p.person("bob")
    bob.login()
    deadline = time.time() + 10
    found = None
    while found is None and time.time() < deadline:
        bob.beat()
        p.step(machines=False)
        found = bob.next()
        time.sleep(0.05)
    assert found is not None, "the frame was not asked of bob after alice's lease ran out"
    stats = p.r.hgetall(p.keys.stats)
    assert stats[b"leases_expired"] == b"1"
    assert p.r.zscore(p.keys.live, "alice") < time.time() - 0.3  # alice is not live
    # alice comes back and answers late: counted once, with bob's
    assert alice.answer(str(held["token"]), 1).status_code == 200
    assert bob.answer(str(found["token"]), 1).status_code == 200
    for _ in range(200):
        p.step(machines=False)
        if p.r.xlen(p.keys.final):
            break
    ((_, rec),) = p.r.xrange(p.keys.final)
    assert sorted(eval(rec[b"labelers"])) == ["alice", "bob"]


def test_skips_never_back_a_person_off(r: redis.Redis, keys: Keys) -> None:
    capture = Capture()
    agg = make_aggregator(r, keys, capture, kappa=5, backoff_after_failures=2)
    accuracies = {"person": 0.9, "machine": 0.9, "other": 0.9}
    register(r, keys, accuracies)
    frames = [open_frame(r, keys, i, truth=1) for i in range(12)]
    agg.step(block_ms=1)
    asked = {lab: [q for q in capture.pending if q.labeler_id == lab] for lab in accuracies}
    capture.pending.clear()
    for q in asked["person"]:
        post_failure(r, keys, q, reason=SKIPPED_REASON)
    for q in asked["machine"]:
        post_failure(r, keys, q, reason="the model crashed")
    agg.step(block_ms=1)
    assert len(asked["person"]) >= 2 and len(asked["machine"]) >= 2
    assert r.hget(keys.failures, "person") is None and r.hget(keys.backoff, "person") is None
    assert r.hget(keys.backoff, "machine") is not None  # failures do back off
    assert r.hget(keys.stats, "requests_skipped") == str(len(asked["person"]))
    assert r.hget(keys.stats, "requests_failed") == str(len(asked["machine"]))
    outstanding = len(asked["other"]) + len(capture.pending)
    assert r.hget(keys.budget, "spent") == str(outstanding)  # skips and failures refunded
    # each skipped frame was asked of someone else at once
    again = {q.frame_id: q.labeler_id for q in capture.pending}
    assert all(again.get(q.frame_id) not in (None, "person") for q in asked["person"])
    capture.pending.extend(asked["other"])
    run_until_idle(agg, r, keys, capture, accuracies)
    assert r.xlen(keys.final) == len(frames)


def test_labeler_workers_do_not_serve_people() -> None:
    settings = Settings(labelers=[LabelerSettings(id="alice", backend="human")])
    with pytest.raises(ConfigError, match="backend 'human' is a person"):
        run_labeler_worker(settings, ["alice"])


def test_labeler_all_skips_people_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import os

    from gtx_stream.cli import main

    os.environ["GTX_LABELERS"] = json.dumps([{"id": "alice", "backend": "human"}])
    try:
        assert main(["labeler", "--all"]) == 2
    finally:
        del os.environ["GTX_LABELERS"]
    err = capsys.readouterr().err
    assert "not serving alice" in err and "all are people" in err
