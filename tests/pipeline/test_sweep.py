"""The sweep finds what is due through time-ordered sets, never by walking the open set.

Every open frame is in ``leases`` (it has an outstanding request) or in ``waiting`` (it has
none): each script that changes which keeps it so in the same atomic step. These tests pin
that down script by script, then show that a sweep reads only what is due and still heals
every frame a crash or a missing labeler left waiting (invariant 2), with no stream entry left
to heal it otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.records import FinalRecord, LabelEntry
from gtx_stream.pipeline.aggregate.aggregator import Aggregator
from gtx_stream.pipeline.aggregate.sweeper import GONE_REASON, Sweeper
from gtx_stream.store import frame_scripts as fs
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.waiting_scripts import StallDelay
from tests.aggregator_harness import (
    Capture,
    answer,
    dead_records,
    final_records,
    make_aggregator,
    open_frame,
    register,
)

BACKOFF = fs.BackoffPolicy()


@pytest.fixture
def run(r: redis.Redis) -> ScriptRunner:
    return ScriptRunner(r)


@pytest.fixture
def sweeper(r: redis.Redis, keys: Keys, run: ScriptRunner) -> Iterator[Sweeper]:
    s = Sweeper(r, keys, run)
    assert s.seed_waiting() == 0  # a fresh prefix: nothing to walk, the mark is set
    yield s


def _waiting(r: redis.Redis, keys: Keys) -> set[str]:
    return set(r.zrange(keys.waiting, 0, -1))


def _ask(run: ScriptRunner, keys: Keys, fid: str, labeler: str, rid: str, **kw: object) -> str:
    args: dict[str, object] = {"n_labels": 0, "max_inflight": 1, "deadline": time.time() + 60}
    return run.run_one(fs.ask(keys, frame_id=fid, labeler=labeler, request_id=rid,
                              **{**args, **kw}))  # type: ignore[arg-type]  # fmt: skip


def _apply(run: ScriptRunner, keys: Keys, *entries: LabelEntry) -> fs.Applied:
    pairs = [(f"{i + 1}-0", e) for i, e in enumerate(entries)]
    return run.run_one(fs.apply_labels(keys, pairs, BACKOFF, time.time()))


def _record(fid: str, n_labels: int) -> FinalRecord:
    return FinalRecord(frame_id=fid, label=1, p1=0.9, confidence=0.9, reason="confident",
                       method="gtx", labelers=["a"] * n_labels, labels=[1] * n_labels,
                       accuracies=[0.9] * n_labels, finalised_at=time.time())  # fmt: skip


# --- each script keeps every open frame in leases or in waiting ----------------------------


def test_a_frame_waits_from_its_opening_until_a_request_is_granted(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.9, "b": 0.9})
    fid = open_frame(r, keys, 0, 1)
    assert r.zscore(keys.waiting, fid) == pytest.approx(r.zscore(keys.open_frames, fid))
    r.hset(keys.budget, mapping={"limit": 0})
    assert _ask(run, keys, fid, "a", "r0") == "budget"  # refused: still waiting
    assert _waiting(r, keys) == {fid}
    r.hdel(keys.budget, "limit")
    assert _ask(run, keys, fid, "a", "r1") == "ok"
    assert _waiting(r, keys) == set() and r.zcard(keys.leases) == 1


def test_an_answered_or_failed_request_leaves_its_frame_waiting_unless_another_is_out(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.9, "b": 0.9, "c": 0.9})
    one, two = open_frame(r, keys, 0, 1), open_frame(r, keys, 1, 1)
    assert _ask(run, keys, one, "a", "ra") == "ok"
    assert _ask(run, keys, two, "a", "rx", max_inflight=2) == "ok"
    assert _ask(run, keys, two, "b", "ry", max_inflight=2) == "ok"
    assert _waiting(r, keys) == set()
    # a label on `two` while b's request is still out: `two` is found through b's lease
    applied = _apply(run, keys, LabelEntry(one, "a", "ra", 1), LabelEntry(two, "a", "rx", 1))
    assert applied.statuses == ["applied", "applied"]
    assert _waiting(r, keys) == {one}
    assert _apply(run, keys, LabelEntry.failure(two, "b", "ry", "boom")).statuses == ["failed"]
    assert _waiting(r, keys) == {one, two}


def test_a_lease_that_runs_out_leaves_its_open_frame_waiting(
    r: redis.Redis, keys: Keys, run: ScriptRunner, sweeper: Sweeper
) -> None:
    register(r, keys, {"a": 0.9})
    fid, done = open_frame(r, keys, 0, 1), open_frame(r, keys, 1, 1)
    for f in (fid, done):
        assert _ask(run, keys, f, "a", f"r-{f}", deadline=time.time() - 1) == "ok"
    finals = run.run_one(fs.finalise(keys, [_record(done, 0)]))
    assert finals[0] is not None
    assert sweeper.expire_leases() == {fid, done}
    assert _waiting(r, keys) == {fid}  # the final frame is not waiting for anything


def test_finalise_and_drop_take_a_frame_out_of_waiting(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    kept, final, gone = (open_frame(r, keys, i, 1) for i in range(3))
    assert run.run_one(fs.finalise(keys, [_record(final, 0)]))[0] is not None
    r.delete(keys.frame(gone))
    assert run.run_one(fs.drop_frame(keys, gone, GONE_REASON))
    assert _waiting(r, keys) == {kept}


# --- a sweep reads what is due, not what is open -------------------------------------------


def test_a_sweep_returns_only_due_frames_never_those_with_a_request_out(
    r: redis.Redis, keys: Keys, run: ScriptRunner, sweeper: Sweeper
) -> None:
    register(r, keys, {"a": 0.9})
    frames = [open_frame(r, keys, i, 1) for i in range(40)]
    for fid in frames[3:]:
        assert _ask(run, keys, fid, "a", f"r-{fid}") == "ok"
    assert sweeper.expire_leases() == set()
    assert sweeper.open_frames() == set(frames[:3])
    r.zadd(keys.waiting, {frames[0]: time.time() + 60})  # due later: not taken yet
    assert sweeper.open_frames() == set(frames[1:3])


def test_a_sweep_takes_at_most_max_due_oldest_first_and_comes_round_to_the_rest(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    frames = [open_frame(r, keys, i, 1) for i in range(5)]
    r.zadd(keys.waiting, {fid: 1000.0 + i for i, fid in enumerate(frames)})
    r.zadd(keys.waiting, {"not-open": 999.0})  # an entry of a frame that is not open
    s = Sweeper(r, keys, run, max_due=2)
    s.seed_waiting()
    assert s.open_frames() == {frames[0]}  # the stale entry took its place, and went
    assert r.zscore(keys.waiting, "not-open") is None
    assert s.open_frames() == set(frames[1:3])
    assert s.open_frames() == set(frames[3:5])
    assert s.open_frames() == set(frames[:2])  # those taken first were stamped due again
    assert r.zcard(keys.waiting) == 5


def test_expired_leases_are_taken_at_most_max_due_a_sweep(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    register(r, keys, {"a": 0.9})
    frames = [open_frame(r, keys, i, 1) for i in range(5)]
    for i, fid in enumerate(frames):
        assert _ask(run, keys, fid, "a", f"r{i}", deadline=time.time() - 10 + i) == "ok"
    s = Sweeper(r, keys, run, max_due=3)
    assert s.expire_leases() == set(frames[:3])
    assert s.backlog  # a full take: more may be due
    assert s.expire_leases() == set(frames[3:])
    assert not s.backlog
    assert s.expire_leases() == set()


def test_the_aggregator_sweeps_again_at_its_next_step_while_a_sweep_left_due_frames(
    r: redis.Redis, keys: Keys
) -> None:
    """A sweep takes at most ``max_due``; the rest are not left for ``sweep_seconds``: each
    step sweeps again until none is due, so a crowd due at once is decided within a few steps,
    a bounded sweep each."""
    register(r, keys, {"a": 0.9}, live=False)  # nobody to ask: every frame stays waiting
    frames = [open_frame(r, keys, i, 1) for i in range(7)]
    agg = Aggregator(r, keys, AggregatorSettings(sweep_seconds=3600.0), consumer="t",
                     enqueue=lambda *a: None)  # fmt: skip
    agg.setup()
    agg.sweeper.max_due = 3
    agg.sweeper.delay = StallDelay(3600.0, 3600.0)  # a frame taken is not due again here
    agg.group.read = lambda block_ms: []  # type: ignore[method-assign]  # no stream entries
    taken: list[set[str]] = []
    sweep = agg._sweep
    agg._sweep = lambda: taken.append(sweep()) or taken[-1]  # type: ignore[method-assign]
    for _ in range(5):
        agg.step(block_ms=1)
    assert [len(t) for t in taken] == [3, 3, 1]  # then none due: no sweep for an hour
    assert set().union(*taken) == set(frames)


# --- healing: what only the sweep can still find ----------------------------------------------


def test_a_frame_left_by_a_crash_between_apply_and_ask_is_asked_again_by_the_sweep(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    """The label was applied (as by an aggregator killed right after ``apply_labels.lua``)
    and no stream entry is left to redeliver: only ``waiting`` still leads to the frame."""
    acc = {"a": 0.7, "b": 0.7, "c": 0.7}
    register(r, keys, acc)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.99, kappa=3)
    fid = open_frame(r, keys, 0, 1)
    agg.step(block_ms=1)
    (req,) = cap.pending
    cap.pending.clear()
    assert _apply(run, keys, LabelEntry(fid, req.labeler_id, req.request_id, 1)).statuses == [
        "applied"
    ]
    time.sleep(0.06)  # past sweep_seconds
    agg.step(block_ms=1)
    (again,) = cap.pending
    assert again.frame_id == fid and again.labeler_id != req.labeler_id
    assert _waiting(r, keys) == set()


def test_frames_wait_while_no_labeler_is_live_and_are_asked_once_one_is(
    r: redis.Redis, keys: Keys
) -> None:
    acc = {"a": 0.9}
    register(r, keys, acc, live=False)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.85, kappa=2)
    frames = [open_frame(r, keys, i, 1) for i in range(6)]
    for _ in range(3):
        agg.step(block_ms=1)
        time.sleep(0.06)
    assert cap.all == [] and _waiting(r, keys) == set(frames)
    r.zadd(keys.live, {"a": time.time() + 3600})
    agg.step(block_ms=1)
    assert sorted(req.frame_id for req in cap.pending) == sorted(frames)
    answer(r, keys, cap, acc)
    agg.step(block_ms=1)
    assert len(final_records(r, keys)) == 6 and r.zcard(keys.waiting) == 0


def test_a_waiting_frame_whose_state_expired_is_dead_lettered_once(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, {"a": 0.9}, live=False)
    cap = Capture()
    agg = make_aggregator(r, keys, cap)
    fid = open_frame(r, keys, 0, 1)
    agg.step(block_ms=1)
    r.delete(keys.frame(fid))  # its TTL ran out
    time.sleep(0.06)
    agg.step(block_ms=1)
    time.sleep(0.06)
    agg.step(block_ms=1)
    assert [d["reason"] for d in dead_records(r, keys)] == [GONE_REASON]
    assert r.zcard(keys.open_frames) == 0 and r.zcard(keys.waiting) == 0


def test_an_upgraded_aggregator_walks_open_frames_once_when_waiting_is_missing(
    r: redis.Redis, keys: Keys, run: ScriptRunner
) -> None:
    """Frames opened before ``waiting`` existed (hash and open set only, no stream entry) are
    seeded into it by the first sweep, and decided; the mark stops any second walk."""
    acc = {"a": 0.9, "b": 0.9}
    register(r, keys, acc)
    old = [f"old-{i}" for i in range(4)]
    for fid in old:
        r.hset(keys.frame(fid), mapping={"state": "open", "source": "s", "source_id": "s",
                                         "frame_index": "0", "opened_at": repr(time.time()),
                                         "n_labels": "0", "truth": "1"})  # fmt: skip
        r.zadd(keys.open_frames, {fid: time.time()})
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.85, kappa=2)
    agg.step(block_ms=1)
    assert sorted(req.frame_id for req in cap.pending) == old
    assert r.exists(keys.waiting_seeded)
    assert Sweeper(r, keys, run).seed_waiting() == 0  # a second aggregator: no walk
    answer(r, keys, cap, acc)
    agg.step(block_ms=1)
    assert sorted(rec["frame_id"] for rec in final_records(r, keys)) == old


class _Crash(Exception):
    """An aggregator step that dies before it decides (as a kill -9 would)."""


def _run_with_crashes(
    r: redis.Redis, keys: Keys, acc: dict[str, float], sweep: bool, steps: int = 400
) -> list[dict[str, str]]:
    """Every third step dies right after applying its labels; each crash is followed by a
    new aggregator. Claims are off (claim_idle_seconds is an hour), so the labels entries a
    crash left pending are never redelivered: only the sweep can find their frames."""
    cap = Capture()
    settings = {"tau": 0.95, "kappa": 3, "claim_idle_seconds": 3600.0, "sweep_seconds": 0.001}
    n = idle = 0
    for i in range(steps):
        agg: Aggregator = make_aggregator(r, keys, cap, consumer=f"a{n}", **settings)
        if not sweep:
            agg.sweeper.open_frames = set  # type: ignore[method-assign]
        if i % 3 == 2:

            def crash(*args: object) -> None:
                raise _Crash

            agg._decide = crash  # type: ignore[method-assign]
        try:
            agg.step(block_ms=1)
        except _Crash:
            n += 1
        idle = 0 if answer(r, keys, cap, acc) else idle + 1
        if r.zcard(keys.open_frames) == 0 or idle > 10:  # all final, or stuck
            break
    return final_records(r, keys)


@pytest.mark.parametrize("sweep", [True, False], ids=["swept", "without-the-sweep"])
def test_no_frame_is_lost_when_steps_die_between_apply_and_ask(
    r: redis.Redis, keys: Keys, sweep: bool
) -> None:
    acc = {f"l{j}": 0.8 for j in range(5)}
    register(r, keys, acc)
    frames = [open_frame(r, keys, i, i % 2) for i in range(30)]
    records = _run_with_crashes(r, keys, acc, sweep)
    finalised = [rec["frame_id"] for rec in records]
    assert len(finalised) == len(set(finalised))  # never twice
    if sweep:
        assert sorted(finalised) == sorted(frames)
        assert r.zcard(keys.waiting) == 0 and r.zcard(keys.leases) == 0
        for rec in records:
            assert len(json.loads(rec["labelers"])) == len(set(json.loads(rec["labelers"])))
    else:  # the check can fail: without the sweep, crashed steps leave frames open for good
        assert r.zcard(keys.open_frames) > 0
        assert set(r.zrange(keys.open_frames, 0, -1)) <= _waiting(r, keys)
