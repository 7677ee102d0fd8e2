"""Retention (invariant 9): what the aggregator trims, and what it must never trim.

Real Redis throughout: the trims read the groups' positions (XINFO GROUPS, XPENDING) and the
consumers' idle times, which fakeredis does not model faithfully.
"""

from __future__ import annotations

import time
from typing import Any, cast

import pytest
import redis

from gtx_stream.config import AggregatorSettings, RetentionSettings
from gtx_stream.pipeline.aggregate.aggregator import GROUP, Aggregator
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    answer,
    final_records,
    open_frame,
    register,
    run_until_idle,
)

ACC = {"a": 0.9, "b": 0.8, "c": 0.75}
# retention only when a test applies it; no margin for ingesters' clocks (one machine)
MANUAL = {"every_seconds": 3600.0, "clock_skew_seconds": 0.0}


def make(
    r: redis.Redis,
    keys: Keys,
    capture: Capture,
    consumer: str = "a1",
    claim_idle_seconds: float = 10.0,
    **retention: Any,
) -> Aggregator:
    settings = AggregatorSettings(tau=0.95, kappa=3, sweep_seconds=0.05,
                                  claim_idle_seconds=claim_idle_seconds)  # fmt: skip
    agg = Aggregator(r, keys, settings, consumer=consumer, enqueue=capture,
                     retention=RetentionSettings(**{**MANUAL, **retention}))  # fmt: skip
    agg.setup()
    return agg


def finalise_frames(
    r: redis.Redis, keys: Keys, agg: Aggregator, capture: Capture, indices: range
) -> list[str]:
    fids = [open_frame(r, keys, i, truth=i % 2) for i in indices]
    run_until_idle(agg, r, keys, capture, ACC)
    return fids


def ids(r: redis.Redis, stream: str) -> list[str]:
    return [entry_id for entry_id, _ in cast(Any, r.xrange(stream))]


# --- labels and opened ---------------------------------------------------------------------


@pytest.mark.parametrize("second_group", ["never reads", "reads, never acknowledges"])
def test_an_entry_that_a_group_has_not_acknowledged_is_never_trimmed(
    r: redis.Redis, keys: Keys, second_group: str
) -> None:
    register(r, keys, ACC)
    capture = Capture()
    agg = make(r, keys, capture)
    r.xgroup_create(keys.labels, "audit", id="0")
    if second_group == "reads, never acknowledges":
        finalise_frames(r, keys, agg, capture, range(3))
        assert r.xreadgroup("audit", "auditor", {keys.labels: ">"})
    finalise_frames(r, keys, agg, capture, range(3, 10))
    labels_before, opened_before = ids(r, keys.labels), ids(r, keys.opened)
    assert r.zcard(keys.open_frames) == 0 and len(labels_before) >= 10

    report = agg.retainer.apply()
    assert ids(r, keys.labels) == labels_before  # the aggregator acked them all, audit did not
    assert report.held_by == {keys.labels: "audit"}
    assert report.trimmed[keys.opened] == len(opened_before) and r.xlen(keys.opened) == 0

    # audit acknowledges the oldest half: exactly those go, the rest stays
    half = labels_before[: len(labels_before) // 2]
    r.xreadgroup("audit", "auditor", {keys.labels: ">"})
    r.xack(keys.labels, "audit", *half)
    assert agg.retainer.apply().trimmed[keys.labels] == len(half)
    assert ids(r, keys.labels) == labels_before[len(half) :]


def test_nothing_is_trimmed_before_the_aggregators_group_exists(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    capture = Capture()
    agg = make(r, keys, capture)
    finalise_frames(r, keys, agg, capture, range(4))
    r.xgroup_destroy(keys.labels, GROUP)  # nobody has read what comes next
    r.xadd(keys.labels, {"frame_id": "src-0", "labeler": "a", "label": "1"})
    n = r.xlen(keys.labels)
    assert agg.retainer.apply().trimmed[keys.labels] == 0 and r.xlen(keys.labels) == n


def test_entries_of_open_frames_stay(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    capture = Capture()
    agg = make(r, keys, capture)
    finalise_frames(r, keys, agg, capture, range(4))  # final before the open frame opened
    old_labels, old_opened = ids(r, keys.labels), ids(r, keys.opened)
    time.sleep(0.005)  # the open frame's opened_at is a later millisecond than those entries
    still_open = open_frame(r, keys, 4, truth=1)
    later = open_frame(r, keys, 5, truth=0)
    for _ in range(50):  # answer everything but the requests of the open frame
        agg.step(block_ms=1)
        capture.pending = [q for q in capture.pending if q.frame_id != still_open]
        if not answer(r, keys, capture, ACC) and r.zcard(keys.open_frames) == 1:
            break
    assert r.zrange(keys.open_frames, 0, -1) == [still_open]
    assert r.hget(keys.frame(later), "state") == "final"
    new_labels = ids(r, keys.labels)[len(old_labels) :]
    assert new_labels  # labels of the frame finalised after it, all acknowledged

    # with the default margin for ingesters' clocks, the last minute stays whatever it holds
    margin = make(r, keys, capture, consumer="a2", clock_skew_seconds=60.0)
    assert margin.retainer.apply().trimmed == {keys.labels: 0, keys.opened: 0, keys.final: 0}

    agg.retainer.apply()
    assert ids(r, keys.labels) == new_labels  # from the open frame's opened_at on, all stays
    assert [f["frame_id"] for _, f in cast(Any, r.xrange(keys.opened))] == [still_open, later]
    assert set(ids(r, keys.labels)).isdisjoint(old_labels)
    assert not set(ids(r, keys.opened)) & set(old_opened)


# --- final ---------------------------------------------------------------------------------


def test_final_is_kept_past_its_age_while_the_exporter_group_has_not_acknowledged(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, ACC)
    capture = Capture()
    agg = make(r, keys, capture, final_seconds=0.05)
    r.xgroup_create(keys.final, "exporter", id="0", mkstream=True)
    finalise_frames(r, keys, agg, capture, range(6))
    final = ids(r, keys.final)
    time.sleep(0.1)  # every entry is older than final_seconds now

    report = agg.retainer.apply()
    assert (report.trimmed[keys.final], report.held_by[keys.final]) == (0, "exporter")
    r.xreadgroup("exporter", "e1", {keys.final: ">"}, count=4)  # reads 4, acknowledges 2
    r.xack(keys.final, "exporter", *final[:2])
    assert agg.retainer.apply().trimmed[keys.final] == 2
    assert ids(r, keys.final) == final[2:]
    r.xack(keys.final, "exporter", *final[2:4])
    r.xreadgroup("exporter", "e1", {keys.final: ">"})
    r.xack(keys.final, "exporter", *final[4:])
    report = agg.retainer.apply()
    assert report.trimmed[keys.final] == 4 and keys.final not in report.held_by
    assert r.xlen(keys.final) == 0


def test_final_is_trimmed_by_age_and_by_length(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    capture = Capture()
    forever = make(r, keys, capture, final_seconds=0, final_maxlen=0)
    finalise_frames(r, keys, forever, capture, range(6))
    assert keys.final not in forever.retainer.apply().trimmed and r.xlen(keys.final) == 6

    final = ids(r, keys.final)
    by_length = make(r, keys, capture, consumer="a2", final_seconds=0, final_maxlen=4)
    assert by_length.retainer.apply().trimmed[keys.final] == 2
    assert ids(r, keys.final) == final[2:]  # the newest four stay

    by_age = make(r, keys, capture, consumer="a3", final_seconds=0.3, final_maxlen=100)
    time.sleep(0.35)
    newer = finalise_frames(r, keys, by_age, capture, range(6, 9))
    by_age.retainer.apply()
    assert sorted(f["frame_id"] for _, f in cast(Any, r.xrange(keys.final))) == newer


# --- consumers of dead aggregators ---------------------------------------------------------


def test_dead_consumers_are_removed_only_after_their_pending_entries_were_claimed(
    r: redis.Redis, keys: Keys
) -> None:
    register(r, keys, ACC)
    capture = Capture()
    agg = make(r, keys, capture, claim_idle_seconds=0.1)  # dead: idle over 0.3 s
    for i in range(3):
        open_frame(r, keys, i, truth=1)
    r.xreadgroup(GROUP, "dead", {keys.opened: ">"})  # a dead aggregator read them, then died
    r.xgroup_createconsumer(keys.labels, GROUP, "dead")
    time.sleep(0.4)

    def consumers(stream: str) -> dict[str, int]:
        return {c["name"]: c["pending"] for c in r.xinfo_consumers(stream, GROUP)}

    report = agg.retainer.apply()
    assert report.removed == {keys.labels: ["dead"]}  # nothing pending there
    assert consumers(keys.opened) == {"dead": 3}

    run_until_idle(agg, r, keys, capture, ACC)  # claims the dead one's entries, finalises
    assert consumers(keys.opened)["dead"] == 0
    assert r.xlen(keys.final) == 3
    r.xgroup_createconsumer(keys.opened, GROUP, "alive")  # idle for a moment only
    report = agg.retainer.apply()
    assert report.removed == {keys.opened: ["dead"]}
    assert set(consumers(keys.opened)) == {"a1", "alive"}

    time.sleep(0.4)  # the aggregator itself is never removed, however long it was idle
    assert agg.retainer.apply().removed == {keys.opened: ["alive"]}
    assert set(consumers(keys.opened)) == set(consumers(keys.labels)) == {"a1"}


# --- on and off ----------------------------------------------------------------------------


def test_retention_off_trims_nothing_and_frames_keep_their_ttl(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACC)
    capture = Capture()
    agg = make(r, keys, capture, enabled=False, final_seconds=0.001, frame_grace_seconds=1)
    fids = finalise_frames(r, keys, agg, capture, range(5))
    assert agg.grace_seconds == 0  # finalise.lua: keep the TTLs
    assert agg.retainer.apply_if_due() is None
    assert r.xlen(keys.final) == 5 and r.xlen(keys.opened) == 5 and r.xlen(keys.labels) >= 5
    for fid in fids:  # the frame TTL (3600 s), not the grace
        assert all(r.ttl(k) > 3000 for k in (keys.frame(fid), keys.frame_requests(fid)))


def test_an_aggregator_run_ends_with_bounded_streams_and_correct_records(
    r: redis.Redis, keys: Keys
) -> None:
    """The same 60 frames with retention off (prefix "off") and on ("on"), in waves of 10:
    the same final records, and with retention the streams hold one wave at most."""
    records = {}
    longest: dict[str, int] = {}
    for name, enabled in (("off", False), ("on", True)):
        k = Keys(name)
        register(r, k, ACC)
        capture = Capture()
        agg = make(r, k, capture, enabled=enabled, every_seconds=0.001, frame_grace_seconds=1)
        longest[name] = 0
        for wave in range(6):
            finalise_frames(r, k, agg, capture, range(10 * wave, 10 * wave + 10))
            agg.step(block_ms=1)  # the step after a wave: its entries are acknowledged now
            longest[name] = max(longest[name], r.xlen(k.labels) + r.xlen(k.opened))
        records[name] = {
            rec["frame_id"]: (
                rec["label"],
                rec["p1"],
                rec["labels"],
                rec["labelers"],
                rec["reason"],
            )
            for rec in final_records(r, k)
        }
    assert len(records["on"]) == 60 and records["on"] == records["off"]
    on, off = Keys("on"), Keys("off")
    assert longest["off"] == 60 + r.xlen(off.labels) and r.xlen(off.labels) >= 60
    assert longest["on"] == 0  # trimmed to nothing after each wave
    assert r.xlen(on.final) == 60  # final_seconds: a week

    # a finalised frame's own keys live for the grace; its image stays (the exporter's)
    assert 0 < r.ttl(on.frame("src-59")) <= 1 and r.ttl(off.frame("src-59")) > 3000
    time.sleep(1.1)
    assert not r.exists(on.frame("src-59"), on.frame_labels("src-59"), on.frame_requests("src-59"))
    assert r.exists(on.image("src-59")) and r.exists(off.frame("src-59"))
