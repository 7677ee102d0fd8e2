"""Stalled frames: open, nothing outstanding, and nobody can be asked (no labeler live, all
backed off or paused). The sweep pushes each back by a growing delay instead of deciding it
again every sweep, and wakes them all when something they wait on changes; a stalled frame
still ends when its time comes (the budget runs out, its labelers are gone).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable

import pytest
import redis

from gtx_stream.core.models import LabelerParams
from gtx_stream.pipeline.aggregate import sweeper as sweeper_module
from gtx_stream.pipeline.aggregate.labelers import LabelerBook
from gtx_stream.pipeline.aggregate.sweeper import Sweeper
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.waiting_scripts import NO_DELAY, StallDelay, take_due, wake_waiting
from tests.aggregator_harness import (
    Capture,
    answer,
    final_records,
    make_aggregator,
    open_frame,
    register,
)

DELAY = StallDelay(shortest=1.0, longest=30.0)


class Clock:
    """Unix seconds that a test moves on by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FreshBook(LabelerBook):
    """The aggregator's book without its one-second cache of the parameters."""

    def params(self, max_age: float = 0.0) -> dict[str, LabelerParams]:
        return super().params(max_age=0.0)


def _sweeper(
    r: redis.Redis, keys: Keys, clock: Clock, watch: bool = True, max_due: int = 1000
) -> Sweeper:
    """(``max_due`` above the frames here: a sweep takes every due one, and the spread shows.)"""
    book = FreshBook(r, keys, live_seconds=5.0) if watch else None
    s = Sweeper(r, keys, ScriptRunner(r), max_due, book=book, delay=DELAY, clock=clock)
    s.seed_waiting()
    return s


def _taken_at(s: Sweeper, clock: Clock, fid: str, seconds: int) -> list[float]:
    """Sweep once a second for ``seconds``; when the sweep took ``fid`` (seconds from the
    start)."""
    start, taken = clock.now, []
    for _ in range(seconds):
        if fid in s.open_frames():
            taken.append(round(clock.now - start, 3))
        clock.now += 1.0
    return taken


# --- the delay --------------------------------------------------------------------------------


def test_a_stalled_frame_is_taken_ever_later_up_to_the_cap(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, {"a": 0.9}, live=False)
    fid = open_frame(r, keys, 0, 1)
    clock = Clock()
    taken = _taken_at(_sweeper(r, keys, clock, watch=False), clock, fid, 300)
    gaps = [b - a for a, b in zip(taken, taken[1:], strict=False)]
    assert taken[0] == 0.0 and gaps[0] in (1.0, 2.0)  # from the shortest: sweep_seconds
    for before, after in zip(gaps[:3], gaps[1:4], strict=True):
        assert 1.5 * before - 1 <= after <= 3 * before + 1  # 2 to 3 times (a sweep of rounding)
    assert all(after >= before - 1 for before, after in zip(gaps, gaps[1:], strict=False))
    assert max(gaps) <= 31 and all(22 <= g <= 31 for g in gaps[-3:])  # the cap: 22.5 to 30 s
    assert len(taken) < 25  # against 300 without the delay


def test_without_a_longest_delay_a_stalled_frame_is_taken_every_sweep(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, {"a": 0.9}, live=False)
    fid = open_frame(r, keys, 0, 1)
    clock = Clock()
    s = Sweeper(r, keys, ScriptRunner(r), delay=StallDelay(1.0, 0.0), clock=clock)
    assert len(_taken_at(s, clock, fid, 20)) == 20


def test_frames_that_stalled_together_come_due_apart(r: redis.Redis, keys: Keys) -> None:
    """The spread (fixed per frame id) keeps a crowd of stalled frames from being decided
    in one sweep every time."""
    register(r, keys, {"a": 0.9}, live=False)
    frames = [open_frame(r, keys, i, 1) for i in range(200)]
    clock = Clock()
    s = _sweeper(r, keys, clock, watch=False)
    per_sweep = []
    for _ in range(120):
        per_sweep.append(len(s.open_frames()))
        clock.now += 1.0
    assert per_sweep[0] == len(frames)
    assert max(per_sweep[60:]) < len(frames) / 2  # spread over the sweeps once at the cap
    assert sum(per_sweep[60:]) < 60 * len(frames) / 10


# --- the wake ---------------------------------------------------------------------------------


def _paused(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, {"b": 0.9})
    r.hset(keys.paused, "b", json.dumps({"reason": "test"}))


def _backed_off(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, {"b": 0.9})
    r.hset(keys.backoff, "b", repr(time.time() + 3600))


def _nothing(r: redis.Redis, keys: Keys) -> None:
    pass


Change = Callable[[redis.Redis, Keys], object]
CHANGES: dict[str, tuple[Change, Change]] = {
    "a-labeler-registers": (_nothing, lambda r, keys: register(r, keys, {"c": 0.8}, live=False)),
    "new-parameters": (_nothing, lambda r, keys: register(r, keys, {"a": 0.95}, live=False)),
    "a-labeler-comes-live": (_nothing, lambda r, keys: r.zadd(keys.live, {"a": time.time()})),
    "a-pause-ends": (_paused, lambda r, keys: r.hdel(keys.paused, "b")),
    "a-backoff-ends": (_backed_off, lambda r, keys: r.hset(keys.backoff, "b", time.time() - 1)),
    "the-limit-is-raised": (_nothing, lambda r, keys: r.hset(keys.budget, "limit", 1000)),
    "the-budget-runs-out": (_nothing, lambda r, keys: r.hset(keys.budget, "spent", 100)),
}


def _pushed_back(r: redis.Redis, keys: Keys, fid: str, clock: Clock) -> Sweeper:
    """A frame stalled for 40 sweeps, then due in an hour (as a long stall would leave it)."""
    s = _sweeper(r, keys, clock)
    assert len(_taken_at(s, clock, fid, 40)) < 10
    assert r.zadd(keys.waiting, {fid: clock.now + 3600}, xx=True) == 0
    assert s.open_frames() == set()
    return s


@pytest.mark.parametrize("setup, change", list(CHANGES.values()), ids=list(CHANGES))
def test_a_change_of_what_stalled_frames_wait_on_makes_them_due_at_once(
    r: redis.Redis, keys: Keys, setup: Change, change: Change
) -> None:
    register(r, keys, {"a": 0.9}, live=False)
    r.hset(keys.budget, mapping={"limit": 100, "spent": 10})
    setup(r, keys)
    fid = open_frame(r, keys, 0, 1)
    clock = Clock()
    s = _pushed_back(r, keys, fid, clock)
    change(r, keys)
    assert s.open_frames() == {fid}
    clock.now += 2.0  # its delay starts again from the shortest (times 1 + spread)
    assert s.open_frames() == {fid}


def test_a_source_that_spends_its_share_wakes_its_stalled_frames(
    r: redis.Redis, keys: Keys
) -> None:
    """With ``aggregator.budget_per_source`` the decider ends a source's open frames as budget
    once the source has spent its share: the sweep must decide them again then."""
    register(r, keys, {"a": 0.9}, live=False)
    r.hset(keys.budget, mapping={"spent": 4, "spent:src": 4})
    fid = open_frame(r, keys, 0, 1)
    clock = Clock()
    s = Sweeper(r, keys, ScriptRunner(r), book=FreshBook(r, keys, 5.0), delay=DELAY,
                clock=clock, source_share=5)  # fmt: skip
    assert len(_taken_at(s, clock, fid, 40)) < 10
    r.zadd(keys.waiting, {fid: clock.now + 3600}, xx=True)
    assert s.open_frames() == set()
    r.hincrby(keys.budget, "spent:src", 1)  # src's fifth label: its share is spent
    assert s.open_frames() == {fid}


def test_what_stalled_frames_do_not_wait_on_wakes_nothing(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, {"a": 0.9}, live=False)
    fid = open_frame(r, keys, 0, 1)
    clock = Clock()
    s = _pushed_back(r, keys, fid, clock)
    r.hincrby(keys.stats, "requests", 5)
    r.zadd(keys.live, {"someone-long-dead": time.time() - 3600})
    assert s.open_frames() == set()


def test_a_new_sweeper_wakes_every_frame_pushed_back(r: redis.Redis, keys: Keys) -> None:
    """An aggregator that starts cannot know what changed before it ran."""
    register(r, keys, {"a": 0.9}, live=False)
    fid = open_frame(r, keys, 0, 1)
    clock = Clock()
    _pushed_back(r, keys, fid, clock)
    assert _sweeper(r, keys, clock).open_frames() == {fid}


def test_a_wake_of_many_frames_is_spread_over_sweeps_and_wakes_each_once(
    r: redis.Redis, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sweeper_module, "WAKE_CHUNK", 2)
    run = ScriptRunner(r)
    frames = [open_frame(r, keys, i, 1) for i in range(5)]
    now = time.time()
    r.zadd(keys.waiting, {fid: now + 10 + i for i, fid in enumerate(frames)})
    first = run.run_one(wake_waiting(keys, now=now, after=repr(now), limit=2))
    assert first.frames == 2
    second = run.run_one(wake_waiting(keys, now=now, after=first.last_due, limit=2))
    third = run.run_one(wake_waiting(keys, now=now, after=second.last_due, limit=2))
    assert (second.frames, third.frames) == (2, 1)
    scores = [r.zscore(keys.waiting, fid) for fid in frames]
    assert scores == pytest.approx([now] * len(frames))
    # the sweeper goes on from where its last call stopped, one chunk a sweep
    register(r, keys, {"a": 0.9}, live=False)
    r.zadd(keys.waiting, {fid: now + 10 + i for i, fid in enumerate(frames)})
    s = Sweeper(r, keys, run, max_due=0, book=FreshBook(r, keys, 5.0), clock=lambda: now)
    assert [s.wake_if_changed() for _ in range(4)] == [2, 2, 1, 0]


def _spread(fid: str) -> float:
    """take_due.lua's: the first 32 bits of the id's SHA-1, in [0, 1)."""
    return int(hashlib.sha1(fid.encode()).hexdigest()[:8], 16) / 2**32


def test_take_due_counts_a_stalled_age_from_the_last_wake(r: redis.Redis, keys: Keys) -> None:
    run = ScriptRunner(r)
    fid = open_frame(r, keys, 0, 1)
    opened = r.zscore(keys.open_frames, fid)
    assert opened is not None
    now, spread = opened + 1000, _spread(fid)
    r.zadd(keys.waiting, {fid: now})
    run.run_one(take_due(keys, now=now, limit=10, since=0.0, delay=DELAY))
    cap = 30 * (3 + spread) / 4  # stalled 1,000 s: the cap
    assert r.zscore(keys.waiting, fid) == pytest.approx(now + cap, abs=1e-3)
    r.zadd(keys.waiting, {fid: now})
    run.run_one(take_due(keys, now=now, limit=10, since=now - 0.5, delay=DELAY))
    shortest = 1 + spread  # woken 0.5 s ago: from the shortest
    assert r.zscore(keys.waiting, fid) == pytest.approx(now + shortest, abs=1e-3)


# --- through the aggregator ---------------------------------------------------------------


def _push_back(r: redis.Redis, keys: Keys, fid: str) -> None:
    """As a long stall would: due in an hour, so that only a wake decides it before then."""
    assert r.zadd(keys.waiting, {fid: time.time() + 3600}, xx=True) == 0
    assert r.zscore(keys.waiting, fid) > time.time() + 3000  # type: ignore[operator]


def test_new_parameters_wake_a_stalled_frame_that_they_make_final(
    r: redis.Redis, keys: Keys
) -> None:
    """One label from a at 0.7 is not confident at tau 0.9, and b (the only other labeler) is
    not live: the frame stalls. The estimator then writes a's accuracy 0.95: the next sweep
    decides the frame again and finalises it, although its delay had an hour to run."""
    acc = {"a": 0.7, "b": 0.7}
    register(r, keys, {"a": 0.7})
    register(r, keys, {"b": 0.7}, live=False)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.9, kappa=2)
    fid = open_frame(r, keys, 0, 1)
    agg.step(block_ms=1)
    (req,) = cap.pending
    assert req.labeler_id == "a"
    answer(r, keys, cap, acc)
    for _ in range(3):
        agg.step(block_ms=1)
        time.sleep(0.06)
    assert final_records(r, keys) == [] and cap.pending == []
    _push_back(r, keys, fid)
    agg.step(block_ms=1)
    assert final_records(r, keys) == []
    r.hset(keys.labelers, "a", json.dumps({"accuracy": 0.95, "source": "em"}))
    deadline = time.time() + 3  # the book re-reads the parameters once a second
    while not final_records(r, keys) and time.time() < deadline:
        agg.step(block_ms=1)
        time.sleep(0.06)
    (rec,) = final_records(r, keys)
    assert rec["frame_id"] == fid and rec["reason"] == "confident"
    assert r.zcard(keys.waiting) == 0


def test_a_stalled_frame_still_ends_when_the_budget_ends(r: redis.Redis, keys: Keys) -> None:
    """A frame only a labeler that is not live may label waits (pushed back an hour); the
    other frames spend the budget; the sweep that sees it spent finalises the stalled one."""
    acc = {"a": 0.9, "ghost": 0.9}
    register(r, keys, {"a": 0.9})
    register(r, keys, {"ghost": 0.9}, live=False)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.99, kappa=1)
    agg.setup(budget=3)
    stalled = open_frame(r, keys, 0, 1, eligible=json.dumps(["ghost"]))
    agg.step(block_ms=1)
    assert cap.pending == []
    _push_back(r, keys, stalled)
    others = [open_frame(r, keys, i, 1) for i in range(1, 4)]
    for _ in range(20):
        agg.step(block_ms=1)
        answer(r, keys, cap, acc)
        time.sleep(0.06)
        if len(final_records(r, keys)) == 4:
            break
    by_frame = {rec["frame_id"]: rec["reason"] for rec in final_records(r, keys)}
    assert by_frame == {stalled: "budget", **dict.fromkeys(others, "kappa")}
    assert r.zcard(keys.waiting) == 0 and r.zcard(keys.open_frames) == 0
    assert int(r.hget(keys.budget, "spent") or 0) == 3


def test_a_stalled_frame_ends_as_exhausted_when_its_labeler_is_unregistered(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, {"a": 0.9})
    register(r, keys, {"ghost": 0.9}, live=False)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.99, kappa=2)
    stalled = open_frame(r, keys, 0, 1, eligible=json.dumps(["ghost"]))
    agg.step(block_ms=1)
    _push_back(r, keys, stalled)
    r.hdel(keys.labelers, "ghost")  # as gold pausing a person does
    deadline = time.time() + 3
    while not final_records(r, keys) and time.time() < deadline:
        agg.step(block_ms=1)
        time.sleep(0.06)
    (rec,) = final_records(r, keys)
    assert rec["frame_id"] == stalled and rec["reason"] == "exhausted"


def _held_takes(r: redis.Redis, keys: Keys, push_back: bool) -> tuple[int, int]:
    """Strategy uncertainty: six frames get their first labels, then the sampler's one pick
    stays unanswered for 25 steps while the five others wait for it (held, not stalled on a
    labeler). How many of them the sweeps took, and how many sweeps ran."""
    acc = dict.fromkeys(["a", "b", "c"], 0.8)
    register(r, keys, acc)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, strategy="uncertainty", budget=12, tau=0.99, kappa=3)
    if not push_back:
        agg.sweeper.delay = NO_DELAY
    for i in range(6):
        open_frame(r, keys, i, i % 2)
    agg.step(block_ms=1)
    answer(r, keys, cap, acc)
    agg.step(block_ms=1)  # the first labels in, and the first pick out
    (pick,) = cap.pending
    taken, sweeps, take = [], 0, agg.sweeper.open_frames

    def counted() -> set[str]:
        nonlocal sweeps
        sweeps += 1
        due = take()
        taken.extend(due - {pick.frame_id})
        return due

    agg.sweeper.open_frames = counted  # type: ignore[method-assign]
    for _ in range(25):
        time.sleep(0.06)
        agg.step(block_ms=1)
    assert cap.pending == [pick] and final_records(r, keys) == []
    return len(taken), sweeps


def test_frames_the_sampler_holds_are_pushed_back_too(r: redis.Redis) -> None:
    held, sweeps = _held_takes(r, Keys("held-pushed"), push_back=True)
    every, every_sweeps = _held_takes(r, Keys("held-every"), push_back=False)
    assert sweeps >= 20 and every_sweeps >= 20
    assert every >= 5 * (every_sweeps - 1)  # without the delay: the five, every sweep
    assert held < every / 3
