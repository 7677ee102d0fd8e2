"""Gold frames: loading, drawing, answering once, qualification, pausing (real Redis)."""

from __future__ import annotations

import json
import random
import time

import numpy as np
import pytest
import redis

from gtx_stream.config import GoldSettings
from gtx_stream.core.accuracy import beta_accuracy
from gtx_stream.store.gold import GoldBook, GoldError, GoldImage, load, paused_people
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import get_labelers
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    open_frame,
    register,
    run_until_idle,
)


def _images(n: int, seed: int = 0) -> list[GoldImage]:
    truths = np.random.default_rng(seed).integers(0, 2, n)
    return [GoldImage(f"g{i:05d}", f"{i:05d}.jpg", b"jpeg-%d" % i, int(t))
            for i, t in enumerate(truths)]  # fmt: skip


def _truths(client: redis.Redis, keys: Keys) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(keys.gold).items()}  # type: ignore[union-attr]


@pytest.fixture
def rb(redis_url: str) -> redis.Redis:
    """A client returning bytes, as the services use (JPEGs are bytes)."""
    return redis.Redis.from_url(redis_url)


# --- load -------------------------------------------------------------------------------------


def test_load_twice_adds_nothing_the_second_time(rb: redis.Redis, keys: Keys) -> None:
    images = _images(30)
    first = load(rb, keys, images)
    assert (first.added, first.kept, first.total) == (30, 0, 30)
    again = load(rb, keys, images + _images(35)[30:])
    assert (again.added, again.kept, again.total) == (5, 30, 35)
    assert rb.hlen(keys.gold) == 35
    assert rb.get(keys.gold_image("g00007")) == b"jpeg-7"
    assert rb.hget(keys.gold_files, "g00007") == b"00007.jpg"
    assert int(rb.hget(keys.stats, "gold_items") or 0) == 35


def test_load_refuses_a_changed_truth_and_writes_nothing(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(3))
    before = _truths(rb, keys)
    img = _images(3)[1]
    flipped = GoldImage(img.gold_id, "flipped.jpg", img.jpeg, 1 - img.truth)
    with pytest.raises(GoldError, match="flipped.jpg: loaded before with truth"):
        load(rb, keys, [GoldImage("new", "new.jpg", b"x", 1), flipped])
    assert _truths(rb, keys) == before  # the new item was not written either
    twice = [GoldImage("same", "a.jpg", b"x", 0), GoldImage("same", "b.jpg", b"x", 1)]
    with pytest.raises(GoldError, match="b.jpg and a.jpg are the same image"):
        load(rb, keys, twice)
    with pytest.raises(GoldError, match="truth must be 0 or 1"):
        load(rb, keys, [GoldImage("t", "t.jpg", b"x", 2)])
    assert _truths(rb, keys) == before


# --- draw -------------------------------------------------------------------------------------


def test_a_new_person_gets_only_gold_then_gold_at_the_rate(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(400))
    book = GoldBook(rb, keys, GoldSettings(rate=0.05, qualification=10))
    rng = random.Random(1)
    truths = _truths(rb, keys)
    for _ in range(10):
        item = book.draw("ann", rng)
        assert item is not None  # always gold while not qualified
        assert not hasattr(item, "truth")
        assert book.image(item.gold_id) == rb.get(item.image_key)
        book.answer("ann", item.gold_id, truths[item.gold_id])
    draws = [book.draw("ann", rng) for _ in range(4000)]
    share = sum(d is not None for d in draws) / len(draws)
    assert 0.04 < share < 0.06  # 5% +- 2.9 standard deviations
    answered = {k.decode() for k in rb.hkeys(keys.gold_answers("ann"))}
    assert all(d.gold_id not in answered for d in draws if d is not None)


def test_draw_offers_only_items_not_answered_yet(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(5))
    book = GoldBook(rb, keys, GoldSettings(rate=1.0, qualification=3))
    seen = set()
    for _ in range(5):
        item = book.draw("bo")
        assert item is not None and item.gold_id not in seen
        seen.add(item.gold_id)
        book.answer("bo", item.gold_id, 1)
    assert book.draw("bo") is None  # none left
    assert book.standing("bo").left == 0
    assert book.draw("cy") is not None  # another person still gets them


# --- answer -----------------------------------------------------------------------------------


def test_a_repeated_answer_is_counted_once(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(5))
    book = GoldBook(rb, keys, GoldSettings(qualification=2))
    gid, truth = "g00000", _truths(rb, keys)["g00000"]
    first = book.answer("ann", gid, truth)
    assert (first.status, first.right, first.score.correct, first.score.total) == (
        "recorded", True, 1, 1,
    )  # fmt: skip
    for label in (truth, 1 - truth):
        again = book.answer("ann", gid, label)
        assert (again.status, again.right, again.score.total) == ("duplicate", True, 1)
    assert rb.hget(keys.stats, "gold_answers") == b"1"
    assert rb.hget(keys.stats, "gold_answers:ann") == b"1"
    unknown = book.answer("ann", "no-such-item", 1)
    assert (unknown.status, unknown.right, unknown.score.total) == ("unknown", None, 1)
    with pytest.raises(GoldError, match="label must be 0 or 1"):
        book.answer("ann", gid, 2)


def test_gold_answers_never_touch_the_budget(rb: redis.Redis, keys: Keys) -> None:
    rb.hset(keys.budget, mapping={"limit": 10, "spent": 3})
    load(rb, keys, _images(20))
    book = GoldBook(rb, keys, GoldSettings(qualification=5))
    for i in range(20):
        book.answer("ann", f"g{i:05d}", 1)
    assert rb.hgetall(keys.budget) == {b"limit": b"10", b"spent": b"3"}
    assert rb.hget(keys.stats, "gold_answers") == b"20"


def test_concurrent_answers_of_one_person_all_count(
    rb: redis.Redis, redis_url: str, keys: Keys
) -> None:
    """Two pages of one person answering at once: every answer counts once, and the stored
    score is the one of all of them (the script refuses estimates computed from a stale
    total and the caller recomputes)."""
    import threading

    load(rb, keys, _images(200))
    truths = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings(qualification=0, floor=0.0))  # never paused
    ids = sorted(truths)

    def page(part: list[str]) -> None:
        own = GoldBook(redis.Redis.from_url(redis_url), keys, book.s)
        for gid in part:
            own.answer("ann", gid, 1)

    threads = [threading.Thread(target=page, args=(ids[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ones = sum(truths.values())
    st = book.standing("ann").score
    assert (st.correct, st.total) == (ones, 200)
    assert st == book.score_of(ones, 200)
    assert get_labelers(rb, keys)["ann"].n == 200


# --- qualification ----------------------------------------------------------------------------


def test_labels_count_only_once_a_person_has_qualified(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(20))
    truths = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings(qualification=10, prior_a=2, prior_b=1, level=0.9))
    for i in range(9):
        res = book.answer(
            "ann", f"g{i:05d}", truths[f"g{i:05d}"] if i % 3 else 1 - truths[f"g{i:05d}"]
        )
        assert not res.qualified
        assert "ann" not in get_labelers(rb, keys)  # not registered: labels refused, no requests
    res = book.answer("ann", "g00009", truths["g00009"])
    assert res.qualified and res.status == "recorded"
    rec = get_labelers(rb, keys)["ann"]
    # 7 right of 10 under Beta(2, 1), 90% interval: the core's estimate, source gold
    est = beta_accuracy(7, 10, (2, 1), 0.9)
    assert (rec.source, rec.n) == ("gold", 10)
    assert (rec.accuracy, rec.lower, rec.upper) == (
        float(est.accuracy), float(est.lower), float(est.upper),
    )  # fmt: skip
    book.answer("ann", "g00010", 1 - truths["g00010"])
    assert get_labelers(rb, keys)["ann"].n == 11  # every later answer updates it


def test_a_configured_accuracy_is_replaced_by_the_gold_estimate(
    rb: redis.Redis, keys: Keys
) -> None:
    register(rb, keys, {"ann": 0.99}, live=False)
    load(rb, keys, _images(3))
    book = GoldBook(rb, keys, GoldSettings(qualification=1))
    book.answer("ann", "g00000", 1 - _truths(rb, keys)["g00000"])
    rec = get_labelers(rb, keys)["ann"]
    assert (rec.source, rec.accuracy) == ("gold", pytest.approx(1 / 3))


# --- convergence and pausing ------------------------------------------------------------------

PEOPLE = {"p95": 0.95, "p85": 0.85, "p70": 0.70, "p55": 0.55}


def _answers(book: GoldBook, person: str, acc: float, gold: dict[str, int], n: int,
             rng: np.random.Generator) -> None:  # fmt: skip
    for gid in list(gold)[:n]:
        right = rng.random() < acc
        book.answer(person, gid, gold[gid] if right else 1 - gold[gid])


def test_people_answering_gold_at_five_percent_of_2000_frames_converge(
    rb: redis.Redis, keys: Keys
) -> None:
    """The label server's feed: each of 2,000 frames is gold when draw says so (5%, and all
    of the first 10); each person's estimate lands within 0.1 of their true accuracy, inside
    their 95% interval."""
    load(rb, keys, _images(600))
    gold = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings())
    rng = np.random.default_rng(7)
    for person, acc in PEOPLE.items():
        draws = random.Random(person)
        for _ in range(2000):
            item = book.draw(person, draws)
            if item is not None:
                right = rng.random() < acc
                truth = gold[item.gold_id]
                book.answer(person, item.gold_id, truth if right else 1 - truth)
    for person, acc in PEOPLE.items():
        st = book.standing(person)
        assert 90 <= st.score.total <= 140, person  # 10 + 5% of 1,990, give or take
        assert st.score.lower <= acc <= st.score.upper, (person, st.score)
        assert abs(st.score.accuracy - acc) < 0.1, (person, st.score)
        assert get_labelers(rb, keys)[person].source == "gold"
    assert int(rb.hget(keys.stats, "gold_answers") or 0) == sum(
        book.standing(p).score.total for p in PEOPLE
    )


@pytest.mark.slow
def test_the_person_below_the_floor_is_paused_and_the_others_are_not(
    rb: redis.Redis, keys: Keys
) -> None:
    """2,000 gold answers each: estimates within 0.03 of the truth and inside their
    intervals; the person at 0.55 has their interval fall below the floor of 0.6 and is
    paused (taken off the live set, no more frames), the others never."""
    load(rb, keys, _images(2000))
    gold = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings(floor=0.6))
    rng = np.random.default_rng(3)
    rb.zadd(keys.live, {p: time.time() + 3600 for p in PEOPLE})
    for person, acc in PEOPLE.items():
        _answers(book, person, acc, gold, 2000, rng)
    paused = paused_people(rb, keys)
    assert set(paused) == {"p55"}
    why = paused["p55"]
    assert why["upper"] < 0.6 and why["floor"] == 0.6
    assert "below the floor 0.6" in why["reason"]
    assert book.standing("p55").paused == why["reason"]
    assert rb.zscore(keys.live, "p55") is None and rb.zscore(keys.live, "p70") is not None
    assert set(get_labelers(rb, keys)) == set(PEOPLE) - {"p55"}  # unregistered
    assert book.draw("p55", random.Random(0)) is None
    for person, acc in PEOPLE.items():
        st = book.standing(person).score
        assert st.total == 2000
        assert st.lower <= acc <= st.upper and abs(st.accuracy - acc) < 0.03, (person, st)
    # the first record is kept: later answers do not rewrite when or why
    load(rb, keys, [GoldImage("extra", "extra.jpg", b"x", 1)])
    assert book.answer("p55", "extra", 0).paused
    assert paused_people(rb, keys)["p55"] == why


def test_a_person_is_not_paused_before_qualifying(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(20))
    gold = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings(qualification=10, floor=0.6))
    for i in range(9):  # nine wrong: the interval is far below the floor already
        assert not book.answer("bo", f"g{i:05d}", 1 - gold[f"g{i:05d}"]).paused
    assert book.answer("bo", "g00009", 1 - gold["g00009"]).paused


def test_reset_lifts_the_pause_and_the_person_qualifies_again(rb: redis.Redis, keys: Keys) -> None:
    load(rb, keys, _images(20))
    gold = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings(qualification=4))
    for i in range(4):  # 0 right of 4: Beta(1, 5), upper bound 0.52
        book.answer("bo", f"g{i:05d}", 1 - gold[f"g{i:05d}"])
    assert book.is_paused("bo") and "bo" not in get_labelers(rb, keys)
    assert book.reset("bo")
    assert not book.is_paused("bo") and "bo" not in get_labelers(rb, keys)
    assert book.standing("bo").score.total == 0 and book.standing("bo").left == 20
    assert not book.reset("bo")


# --- the aggregator ---------------------------------------------------------------------------


def test_the_aggregator_weighs_labels_with_the_new_gold_estimate(
    rb: redis.Redis, keys: Keys
) -> None:
    """A gold answer rewrites the person's accuracy; the aggregator's next decisions weigh
    their labels with it (the final records' accuracies show it), and a paused person is not
    asked even while their heartbeat stamps them live."""
    machines = {"m1": 0.9, "m2": 0.8}
    register(rb, keys, machines)
    load(rb, keys, _images(40))
    gold = _truths(rb, keys)
    book = GoldBook(rb, keys, GoldSettings(qualification=10))
    for i in range(10):
        book.answer("ann", f"g{i:05d}", gold[f"g{i:05d}"])  # 10 of 10: 11/12
    rb.zadd(keys.live, {"ann": time.time() + 3600})
    acc = {**machines, "ann": 0.9}
    cap = Capture()
    agg = make_aggregator(rb, keys, cap, tau=0.999, kappa=3)
    for i in range(5):
        open_frame(rb, keys, i, truth=i % 2)
    run_until_idle(agg, rb, keys, cap, acc)
    asked_ann = [r for r in final_records(rb, keys) if "ann" in json.loads(r["labelers"])]
    assert asked_ann
    for r in asked_ann:
        j = json.loads(r["labelers"]).index("ann")
        assert json.loads(r["accuracies"])[j] == pytest.approx(11 / 12)
    for i in range(10, 14):  # four wrong answers: 10 right of 14, 11/16
        book.answer("ann", f"g{i:05d}", 1 - gold[f"g{i:05d}"])
    time.sleep(1.05)  # the aggregator re-reads the labelers hash at most once a second
    for i in range(5, 10):
        open_frame(rb, keys, i, truth=i % 2)
    run_until_idle(agg, rb, keys, cap, acc)
    later = [r for r in final_records(rb, keys)[5:] if "ann" in json.loads(r["labelers"])]
    assert later
    for r in later:
        j = json.loads(r["labelers"]).index("ann")
        assert json.loads(r["accuracies"])[j] == pytest.approx(11 / 16)
    # paused: never asked again, though live
    for i in range(14, 40):
        book.answer("ann", f"g{i:05d}", 1 - gold[f"g{i:05d}"])
    assert book.is_paused("ann")
    rb.zadd(keys.live, {"ann": time.time() + 3600})  # a heartbeat after the pause
    asked_before = sum(req.labeler_id == "ann" for req in cap.all)
    for i in range(10, 20):
        open_frame(rb, keys, i, truth=i % 2)
    run_until_idle(agg, rb, keys, cap, acc)
    assert sum(req.labeler_id == "ann" for req in cap.all) == asked_before
    assert len(final_records(rb, keys)) == 20
    assert "ann" not in get_labelers(rb, keys)  # unregistered: frames do not wait for them
    # registered again (a configured accuracy, at a restart): still not in the pool
    register(rb, keys, {"ann": 0.9})
    assert agg.labelers.pool(with_load=False).available == set(machines)
