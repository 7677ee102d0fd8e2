"""The aggregator against a real Redis: invariants 1, 3, 4, 5, 6 and 7 of DESIGN.md."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import redis

from gtx_stream.core.decision import threshold_stop
from gtx_stream.core.draws import labeler_order, simulated_label
from gtx_stream.core.models import aggregate
from gtx_stream.core.records import LabelEntry, LabelRequest, RequestState
from gtx_stream.pipeline.aggregate.aggregator import GROUP
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    answer,
    dead_records,
    final_records,
    make_aggregator,
    open_frame,
    post_failure,
    post_label,
    register,
    run_until_idle,
)

ACC = {f"lab{j}": a for j, a in enumerate(np.linspace(0.62, 0.98, 10))}


def _frames(r: redis.Redis, keys: Keys, n: int, seed: int = 1) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    return {open_frame(r, keys, i, int(t)): int(t) for i, t in enumerate(rng.integers(0, 2, n))}


@pytest.mark.parametrize("method", ["gtx", "sv", "mv", "wmv"])
def test_streaming_equals_offline(r: redis.Redis, keys: Keys, method: str) -> None:
    """Invariant 6: finalised labels, confidences and label counts equal the offline run."""
    register(r, keys, ACC)
    truths = _frames(r, keys, 40)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, method=method, tau=0.97, kappa=5, seed=7)
    run_until_idle(agg, r, keys, cap, ACC, seed=3)

    records = {rec["frame_id"]: rec for rec in final_records(r, keys)}
    assert sorted(records) == sorted(truths)
    fids = sorted(truths)
    orders = [labeler_order(7, fid, list(ACC)) for fid in fids]
    labels = [[simulated_label(3, f, lab, truths[f], ACC[lab]) for lab in o] for f, o in
              zip(fids, orders, strict=True)]  # fmt: skip
    accs = [[ACC[lab] for lab in o] for o in orders]
    offline = threshold_stop(method, labels, accs, tau=0.97, kappa=5)
    for i, fid in enumerate(fids):
        rec = records[fid]
        n = int(offline.n_labels[i])
        assert int(rec["n_labels"]) == n
        assert json.loads(rec["labelers"]) == orders[i][:n]
        assert json.loads(rec["labels"]) == labels[i][:n]
        assert int(rec["label"]) == int(offline.posterior.label[i])
        assert float(rec["confidence"]) == float(offline.posterior.confidence[i])
        assert float(rec["p1"]) == float(offline.posterior.p1[i])


def test_final_record_fields_and_posterior(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    _frames(r, keys, 10)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.99, kappa=3)
    run_until_idle(agg, r, keys, cap, ACC)
    for rec in final_records(r, keys):
        for name in ("frame_id", "source", "frame_index", "label", "confidence", "p1", "n_labels",
                     "labelers", "labels", "reason", "opened_at", "finalised_at"):  # fmt: skip
            assert name in rec
        assert rec["reason"] in ("confident", "kappa", "exhausted", "budget")
        labs = json.loads(rec["labelers"])
        post = aggregate("gtx", [json.loads(rec["labels"])], [[ACC[lab] for lab in labs]])
        assert float(rec["p1"]) == float(post.p1[0])
        assert len(set(labs)) == len(labs)  # invariant 1
    assert r.zcard(keys.open_frames) == 0
    # images are kept for the exporter, and the record names them
    assert r.exists(keys.image("src-0")) == 1
    assert all(rec["image_key"] == keys.image(rec["frame_id"]) for rec in final_records(r, keys))


def test_label_counted_once_however_often_delivered(r: redis.Redis, keys: Keys) -> None:
    """Invariant 3: a redelivered entry is not counted again; a second label is a duplicate."""
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.999999, kappa=5)
    agg.step(block_ms=1)
    (req,) = cap.pending
    cap.pending.clear()
    label = LabelEntry(fid, req.labeler_id, req.request_id, 1).to_fields()
    r.xadd(keys.labels, label)  # type: ignore[arg-type]
    r.xadd(keys.labels, label)  # type: ignore[arg-type]  # the worker retried: the same again
    agg.step(block_ms=1)
    assert r.llen(keys.frame_labels(fid)) == 1
    dead = dead_records(r, keys)
    assert [d["reason"].split(":")[0] for d in dead] == ["duplicate"]

    # a consumer that read the first entry but died before acknowledging: it is claimed and
    # redelivered, and still counted once
    first_id = r.xrange(keys.labels, "-", "+")[0][0]
    r.xclaim(keys.labels, GROUP, "dead-consumer", 0, [first_id], force=True)
    r.xadd(keys.labels, {"x": "y"})  # something new, so the claim cursor moves on
    agg2 = make_aggregator(r, keys, cap, consumer="a2", tau=0.999999, claim_idle_seconds=0.001)
    agg2.step(block_ms=1)
    assert r.llen(keys.frame_labels(fid)) == 1
    assert r.hget(keys.stats, "labels_applied") == "1"


def test_never_two_labels_from_one_labeler(r: redis.Redis, keys: Keys) -> None:
    """Invariant 1: every labeler asked once; a second label from one of them is refused."""
    weak = {f"w{j}": 0.6 for j in range(10)}  # ten labels at 0.6 never reach tau
    register(r, keys, weak)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.99, kappa=12)
    run_until_idle(agg, r, keys, cap, weak)
    rec = final_records(r, keys)[0]
    labs = json.loads(rec["labelers"])
    assert len(labs) == len(set(labs)) == 10
    assert rec["reason"] == "exhausted"
    r.xadd(keys.labels, LabelEntry(fid, labs[0], "x", 0).to_fields())  # type: ignore[arg-type]
    agg.step(block_ms=1)
    assert dead_records(r, keys)[-1]["reason"].startswith("duplicate")


def test_unsolicited_label_is_refused(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap)
    agg.step(block_ms=1)
    asked = cap.pending[0].labeler_id
    other = next(lab for lab in ACC if lab != asked)
    r.xadd(keys.labels, {"frame_id": fid, "labeler": other, "label": "1"})
    agg.step(block_ms=1)
    assert dead_records(r, keys)[-1]["reason"].startswith("unsolicited")
    assert r.llen(keys.frame_labels(fid)) == 0


def test_budget_never_overspent_with_concurrent_aggregators(
    r: redis.Redis, keys: Keys, redis_url: str
) -> None:
    """Invariant 4: three aggregators race on one budget; spent never exceeds the limit."""
    register(r, keys, ACC)
    _frames(r, keys, 30)
    caps = [Capture() for _ in range(3)]
    clients = [redis.Redis.from_url(redis_url, decode_responses=True) for _ in caps]
    aggs = [
        make_aggregator(c, keys, cap, consumer=f"a{i}", budget=25, tau=0.999, kappa=5)
        for i, (c, cap) in enumerate(zip(clients, caps, strict=True))
    ]
    stop = threading.Event()

    def loop(i: int) -> None:
        while not stop.is_set():
            aggs[i].step(block_ms=1)
            answer(clients[i], keys, caps[i], ACC)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while r.zcard(keys.open_frames) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    for t in threads:
        t.join()
    assert r.zcard(keys.open_frames) == 0
    assert int(r.hget(keys.budget, "spent")) <= 25
    assert sum(len(c.all) for c in caps) <= 25
    records = final_records(r, keys)
    assert len(records) == 30 == len({rec["frame_id"] for rec in records})  # invariant 2
    assert sum(int(rec["n_labels"]) for rec in records) <= 25
    assert any(rec["reason"] == "budget" for rec in records)


@pytest.mark.parametrize("max_inflight", [1, 3])
def test_at_most_max_inflight_requests(r: redis.Redis, keys: Keys, max_inflight: int) -> None:
    """Invariant 5: never more outstanding requests on a frame than max_inflight."""
    register(r, keys, ACC)
    fids = list(_frames(r, keys, 8))
    cap = Capture()
    agg = make_aggregator(r, keys, cap, max_inflight=max_inflight, tau=0.999999, kappa=8)
    agg2 = make_aggregator(r, keys, cap, consumer="a2", max_inflight=max_inflight,
                           tau=0.999999, kappa=8)  # fmt: skip
    peak = 0
    for _ in range(200):
        agg.step(block_ms=1)
        agg2.step(block_ms=1)
        for fid in fids:
            states = [RequestState.decode(v) for v in r.hvals(keys.frame_requests(fid))]
            out = sum(s.outstanding for s in states)
            peak = max(peak, out)
            assert out <= max_inflight
        if not cap.pending and r.zcard(keys.open_frames) == 0:
            break
        answer(r, keys, cap, ACC)
    assert peak == max_inflight


def test_lease_expiry_asks_another_and_late_label_counts_once(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.999999, kappa=5, lease_seconds=0.05)
    agg.step(block_ms=1)
    (first,) = cap.pending
    slow = first.labeler_id
    cap.pending.clear()
    time.sleep(0.1)
    agg.step(block_ms=1)  # the lease ran out: someone else is asked
    assert [p.labeler_id for p in cap.pending] and cap.pending[0].labeler_id != slow
    late = RequestState.decode(r.hget(keys.frame_requests(fid), slow))
    assert late == RequestState("late", first.request_id)
    label = LabelEntry(fid, slow, first.request_id, 1).to_fields()
    r.xadd(keys.labels, label)  # type: ignore[arg-type]
    r.xadd(keys.labels, label)  # type: ignore[arg-type]
    agg.step(block_ms=1)
    labs = [json.loads(x)[0] for x in r.lrange(keys.frame_labels(fid), 0, -1)]
    assert labs.count(slow) == 1


BAD_LABELS = [
    ({"frame_id": "src-0", "labeler": "lab0", "label": "2"}, "label must be 0 or 1"),
    ({"frame_id": "src-0", "labeler": "lab0", "label": "-1"}, "label must be 0 or 1"),
    ({"frame_id": "src-0", "labeler": "lab0", "label": "yes"}, "label must be 0 or 1"),
    ({"frame_id": "src-0", "label": "1"}, "missing field: labeler"),
    ({"labeler": "lab0", "label": "1"}, "missing field: frame_id"),
    ({"frame_id": "src-0", "labeler": "nobody", "label": "1"}, "unknown labeler"),
    ({"frame_id": "nope-1", "labeler": "lab0", "label": "1"}, "unknown frame"),
    ({"frame_id": "src-0", "labeler": "lab0", "label": "1", "junk": "x" * 10_000}, "payload"),
]


@pytest.mark.parametrize("fields,reason", BAD_LABELS, ids=[b[1] for b in BAD_LABELS])
def test_bad_labels_are_dead_lettered(
    r: redis.Redis, keys: Keys, fields: dict[str, str], reason: str
) -> None:
    """Invariant 7: a bad label is dead-lettered with its reason; the frame is untouched."""
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap)
    agg.step(block_ms=1)
    before = (r.hgetall(keys.frame(fid)), r.lrange(keys.frame_labels(fid), 0, -1))
    r.xadd(keys.labels, fields)
    agg.step(block_ms=1)
    dead = dead_records(r, keys)
    assert len(dead) == 1 and reason in dead[0]["reason"]
    assert dead[0]["kind"] == "label"
    assert (r.hgetall(keys.frame(fid)), r.lrange(keys.frame_labels(fid), 0, -1)) == before
    assert r.xpending(keys.labels, GROUP)["pending"] == 0  # handled and acknowledged


def test_label_for_finalised_frame_is_dead_lettered(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.9, kappa=1)
    run_until_idle(agg, r, keys, cap, ACC)
    r.xadd(keys.labels, {"frame_id": fid, "labeler": "lab1", "label": "1"})
    agg.step(block_ms=1)
    assert dead_records(r, keys)[-1]["reason"] in ("frame already finalised",) or dead_records(
        r, keys
    )[-1]["reason"].startswith("duplicate")
    assert len(final_records(r, keys)) == 1


def test_exhausted_when_no_eligible_labeler_left(r: redis.Redis, keys: Keys) -> None:
    acc = {"a": 0.7, "b": 0.7}
    register(r, keys, acc)
    open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.99, kappa=5)
    run_until_idle(agg, r, keys, cap, acc)
    (rec,) = final_records(r, keys)
    assert rec["reason"] == "exhausted" and rec["n_labels"] == "2"


def test_frames_wait_while_no_labeler_is_live(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC, live=False)
    open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap)
    for _ in range(3):
        agg.step(block_ms=1)
    assert cap.all == [] and r.zcard(keys.open_frames) == 1
    r.zadd(keys.live, {"lab3": time.time()})
    time.sleep(0.06)
    agg.step(block_ms=1)
    assert [p.labeler_id for p in cap.all] == ["lab3"]


def test_expired_frame_state_is_dead_lettered_once(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    r.delete(keys.frame(fid))  # as if its TTL ran out
    cap = Capture()
    agg = make_aggregator(r, keys, cap)
    agg.step(block_ms=1)
    time.sleep(0.06)
    agg.step(block_ms=1)
    dead = dead_records(r, keys)
    assert len(dead) == 1 and dead[0]["kind"] == "frame"
    assert r.zcard(keys.open_frames) == 0


# --- requests: bound to their id, failures reported at once (issue 7, 2.3 and 2.4) ----------


def _one_request(cap: Capture) -> LabelRequest:
    (req,) = cap.pending
    cap.pending.clear()
    return req


def test_a_label_with_a_made_up_request_id_is_not_applied(r: redis.Redis, keys: Keys) -> None:
    """In the name of the labeler asked, with a request id it was not given: dead-lettered as
    a request mismatch; the real request's label is applied afterwards."""
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.999999)
    agg.step(block_ms=1)
    req = _one_request(cap)
    forged = LabelEntry(fid, req.labeler_id, "made-up-request-id", 1).to_fields()
    r.xadd(keys.labels, forged)  # type: ignore[arg-type]
    agg.step(block_ms=1)
    assert r.llen(keys.frame_labels(fid)) == 0
    (letter,) = dead_records(r, keys)
    assert letter["reason"].startswith("request mismatch")
    assert RequestState.decode(r.hget(keys.frame_requests(fid), req.labeler_id)).outstanding
    post_label(r, keys, req, ACC)
    agg.step(block_ms=1)
    assert r.llen(keys.frame_labels(fid)) == 1


def test_each_request_has_its_own_unguessable_id(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    _frames(r, keys, 20)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, max_inflight=3, tau=0.999999)
    agg.step(block_ms=1)
    ids = [req.request_id for req in cap.all]
    assert len(ids) == 60 == len(set(ids))
    assert all(len(rid) >= 22 and rid.isascii() for rid in ids)  # 16 random bytes, URL-safe
    for req in cap.all:
        stored = RequestState.decode(r.hget(keys.frame_requests(req.frame_id), req.labeler_id))
        assert stored == RequestState("out", req.request_id)


def test_a_failed_request_is_asked_of_another_labeler_at_once(r: redis.Redis, keys: Keys) -> None:
    """A failure report re-decides its frame in the same step: another labeler is asked, the
    failed one never again about this frame, and the label of budget is given back."""
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, budget=10, tau=0.999999, lease_seconds=3600)
    agg.step(block_ms=1)
    first = _one_request(cap)
    assert r.hget(keys.budget, "spent") == "1"
    post_failure(r, keys, first, "backend error")
    report = agg.step(block_ms=1)
    assert (report.failed, report.asked, report.dead) == (1, 1, 0)
    second = _one_request(cap)
    assert second.frame_id == fid and second.labeler_id != first.labeler_id
    assert r.hget(keys.budget, "spent") == "1"  # the failure was given back, the new one taken
    assert RequestState.decode(r.hget(keys.frame_requests(fid), first.labeler_id)) == (
        RequestState("failed", first.request_id)
    )
    # the rest of the labelers fail too: each is asked once, then the frame is exhausted
    cap.pending.append(second)
    run_until_idle(agg, r, keys, cap, ACC, failing=frozenset(ACC))
    assert sorted(req.labeler_id for req in cap.all) == sorted(ACC)
    (rec,) = final_records(r, keys)
    assert (rec["reason"], rec["n_labels"]) == ("exhausted", "0")
    assert r.hget(keys.budget, "spent") == "0"
    assert r.hget(keys.stats, "leases_expired") is None  # nobody waited for a lease


def test_a_redelivered_failure_is_applied_once(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, budget=10, tau=0.999999)
    agg.step(block_ms=1)
    failed = post_failure(r, keys, _one_request(cap))
    agg.step(block_ms=1)
    second = _one_request(cap)
    # a consumer that read the failure but died before acknowledging: claimed, redelivered
    r.xclaim(keys.labels, GROUP, "dead-consumer", 0, [failed], force=True)
    agg2 = make_aggregator(r, keys, cap, consumer="a2", budget=10, tau=0.999999,
                           claim_idle_seconds=0.001)  # fmt: skip
    time.sleep(0.01)  # idle for longer than claim_idle_seconds
    report = agg2.step(block_ms=1)
    assert report.counts == {"redelivered": 1} and report.asked == 0
    assert r.hget(keys.stats, "requests_failed") == "1" and r.hget(keys.budget, "spent") == "1"
    assert cap.pending == [] and dead_records(r, keys) == []
    assert RequestState.decode(r.hget(keys.frame_requests(fid), second.labeler_id)).outstanding


def test_a_labeler_failing_in_a_row_is_backed_off_until_its_time_is_up(
    r: redis.Redis, keys: Keys
) -> None:
    acc = {"flaky": 0.9, "good": 0.6}
    register(r, keys, acc)
    for i in range(12):
        open_frame(r, keys, i, 1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.999999, kappa=1, backoff_after_failures=2,
                          backoff_first_seconds=60, dispatch="least_loaded")  # fmt: skip
    agg.step(block_ms=1)
    flaky = [req for req in cap.pending if req.labeler_id == "flaky"]
    assert len(flaky) == 6  # least loaded: half the frames each
    cap.pending = [req for req in cap.pending if req.labeler_id == "good"]
    post_failure(r, keys, flaky[0])
    agg.step(block_ms=1)
    assert r.hget(keys.backoff, "flaky") is None  # one failure is no reason yet
    post_failure(r, keys, flaky[1])
    agg.step(block_ms=1)  # two in a row: backed off; the two frames went to "good"
    until = float(r.hget(keys.backoff, "flaky"))
    assert 55 < until - time.time() <= 60
    for _ in range(5):
        answer(r, keys, cap, acc)
        agg.step(block_ms=1)
    assert all(req.labeler_id == "good" for req in cap.all[12:])
    assert sum(req.labeler_id == "good" for req in cap.all) == 8
    assert r.zcard(keys.open_frames) == 4  # the other four frames wait for flaky's labels

    from gtx_stream.ops.status import pipeline_status

    st = pipeline_status(r, keys)["labelers"]["flaky"]
    assert (st["failures_in_a_row"], st["failed"]) == (2, 2) and 55 < st["backoff_s"] <= 60
    # a frame only flaky may label waits while it is backed off ...
    open_frame(r, keys, 12, 1, eligible=json.dumps(["flaky"]))
    for _ in range(3):
        time.sleep(0.06)  # past sweep_seconds: every open frame is decided again
        agg.step(block_ms=1)
    assert not [req for req in cap.pending if req.frame_id == "src-12"]
    assert r.hexists(keys.frame("src-12"), "state") and r.zscore(keys.open_frames, "src-12")
    # ... and is asked of it once its time is up
    r.hset(keys.backoff, "flaky", repr(time.time() - 1))
    time.sleep(0.06)
    agg.step(block_ms=1)
    (back,) = [req for req in cap.pending if req.frame_id == "src-12"]
    assert back.labeler_id == "flaky"
    answer(r, keys, cap, acc)
    agg.step(block_ms=1)  # a good label clears its count and its backoff
    assert r.hget(keys.failures, "flaky") is None and r.hget(keys.backoff, "flaky") is None


def test_budget_counts_labels_obtained_or_outstanding_never_failures(
    r: redis.Redis, keys: Keys
) -> None:
    """Six labelers of seven fail every request: labels bought = labels obtained + outstanding
    at every step, and every frame is labeled by the seventh."""
    acc = {f"bad{j}": 0.9 for j in range(6)} | {"good": 0.9}
    register(r, keys, acc)
    _frames(r, keys, 20)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, budget=60, tau=0.85, kappa=3, max_inflight=1,
                          backoff_first_seconds=0.01, backoff_max_seconds=0.01)  # fmt: skip
    failing = frozenset(lab for lab in acc if lab != "good")
    for _ in range(2000):
        agg.step(block_ms=1)
        spent = int(r.hget(keys.budget, "spent") or 0)
        applied = int(r.hget(keys.stats, "labels_applied") or 0)
        assert spent == applied + len(cap.pending)  # pending: asked, not answered yet
        if not cap.pending and r.zcard(keys.open_frames) == 0:
            break
        answer(r, keys, cap, acc, failing=failing)
    records = final_records(r, keys)
    assert len(records) == 20
    assert all(json.loads(rec["labelers"]) == ["good"] for rec in records)
    assert int(r.hget(keys.budget, "spent")) == 20
    assert int(r.hget(keys.stats, "requests_failed")) > 20


def test_a_frame_opened_just_after_its_labeler_registered_is_asked_not_exhausted(
    r: redis.Redis, keys: Keys
) -> None:
    """The labelers' parameters are cached for a second; a frame whose only labeler registered
    within that second must not end ``exhausted`` with no label."""
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.9, kappa=1)
    agg.labelers.params()  # cached now: nobody registered
    register(r, keys, {"ann": 0.9})
    fid = open_frame(r, keys, 0, 1)
    agg.step(block_ms=1)
    assert r.xlen(keys.final) == 0  # not finalised on the stale parameters
    assert [req.frame_id for req in cap.pending] == [fid]  # asked of ann instead
