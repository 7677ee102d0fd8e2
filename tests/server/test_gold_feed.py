"""Gold frames in a person's feed: a new person gets gold only until they qualify, answers go to
the gold book (never to the labels stream, never charged), and look like any request."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
import redis

from gtx_stream.store import gold, people
from tests.server.conftest import PersonClient, Pipeline, build_pipeline, make_settings, open_frames


def test_gold_frames_look_like_requests_go_to_the_gold_book_and_qualify_a_person(
    raw: redis.Redis,
) -> None:
    settings = make_settings(people=["alice"], kappa=1)
    settings.gold.qualification = 3
    settings.gold.rate = 0.0
    p = build_pipeline(raw, settings, ["alice"])
    p.r.hdel(p.keys.labelers, "alice")  # a new person: not registered until qualified
    items = [gold.GoldImage(f"g{i}", f"g{i}.jpg", f"gold-{i}".encode(), i % 2) for i in range(5)]
    gold.load(p.r, p.keys, items)
    alice = p.person("alice")
    alice.login()
    alice.beat()
    seen = []
    for _ in range(3):
        p.step(machines=False)
        found = alice.next()
        assert found is not None
        image = alice.http.get(found["image"]).content
        assert image.startswith(b"gold-")  # only gold while unqualified
        seen.append(image)
        truth = int(image.decode().rsplit("-", 1)[1]) % 2
        assert alice.answer(str(found["token"]), truth).status_code == 200
    assert len(set(seen)) == 3  # never the same gold frame twice
    assert p.r.xlen(p.keys.labels) == 0 and not p.r.hget(p.keys.budget, "spent")
    assert p.r.hexists(p.keys.labelers, "alice")  # qualified: registered with her gold score
    assert alice.http.get("/api/progress").json()["answered_today"] == 3
    deadline = time.time() + 3  # the aggregator re-reads the labelers at most a second later
    while "alice" not in p.agg.labelers.params() and time.time() < deadline:
        time.sleep(0.05)  # (a frame opened before it sees her would find nobody to ask)
    assert "alice" in p.agg.labelers.params()
    open_frames(p, 3)
    deadline = time.time() + 5  # now her real requests come; gold prefetched before she
    extra_gold = 0  # qualified is still shown first
    while time.time() < deadline:
        alice.beat()
        p.step(machines=False)
        found = alice.next()
        if found is None:
            time.sleep(0.05)
            continue
        image = alice.http.get(found["image"]).content
        if image == b"jpeg":
            break
        extra_gold += 1
        assert alice.answer(str(found["token"]), 1).status_code == 200
    assert image == b"jpeg" and extra_gold <= settings.label_server.prefetch


def test_a_paused_person_is_handed_nothing_also_what_was_prefetched(raw: redis.Redis) -> None:
    settings = make_settings(people=["bob"], kappa=1)
    settings.gold.qualification = 2
    settings.gold.rate = 0.0
    settings.gold.floor = 0.9
    p = build_pipeline(raw, settings, ["bob"])
    p.r.hdel(p.keys.labelers, "bob")
    items = [gold.GoldImage(f"g{i}", f"g{i}.jpg", f"gold-{i}".encode(), i % 2) for i in range(6)]
    gold.load(p.r, p.keys, items)
    bob = p.person("bob")
    bob.login()
    bob.beat()
    for _ in range(2):  # two wrong answers: qualified with an interval below the floor
        found = bob.next()
        assert found is not None
        truth = int(bob.http.get(found["image"]).content.decode().rsplit("-", 1)[1]) % 2
        assert bob.answer(str(found["token"]), 1 - truth).status_code == 200
    assert p.r.hexists(p.keys.paused, "bob")
    assert bob.next() is None  # the gold prefetched before the pause is not shown
    # the page learns it from the heartbeat, and says so instead of "nothing to label"
    assert bob.post("/api/heartbeat").json() == {"live": False, "paused": True}


def test_a_person_with_a_configured_accuracy_labels_from_the_first_frame(
    raw: redis.Redis,
) -> None:
    # README: "a configured accuracy registers a person at once, without qualification";
    # with a gold set loaded they had got nothing but gold for their first frames
    settings = make_settings(people=["alice"], kappa=1)
    settings.labelers[0] = settings.labelers[0].model_copy(update={"accuracy": 0.9})
    settings.gold.qualification = 3
    settings.gold.rate = 0.0
    p = build_pipeline(raw, settings, ["alice"])
    items = [gold.GoldImage(f"g{i}", f"g{i}.jpg", f"gold-{i}".encode(), i % 2) for i in range(5)]
    gold.load(p.r, p.keys, items)
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 2)
    p.step(machines=False)
    found = alice.next()
    assert found is not None
    assert alice.http.get(found["image"]).content == b"jpeg"  # a real frame, not gold
    assert [alice.http.get(h["image"]).content for h in found["next"]] == [b"jpeg"]


def _gold_pipeline(raw: redis.Redis, qualification: int = 3) -> tuple[Pipeline, PersonClient]:
    settings = make_settings(people=["alice"], kappa=1)
    settings.gold.qualification = qualification
    settings.gold.rate = 0.0
    p = build_pipeline(raw, settings, ["alice"])
    p.r.hdel(p.keys.labelers, "alice")  # a new person: gold only
    items = [gold.GoldImage(f"g{i}", f"g{i}.jpg", f"gold-{i}".encode(), i % 2) for i in range(5)]
    gold.load(p.r, p.keys, items)
    alice = p.person("alice")
    alice.login()
    alice.beat()
    return p, alice


def _gold_answers(p: Pipeline) -> int:
    return int(p.r.hget(p.keys.gold_stats, "gold_answers") or 0)


def test_a_skip_is_not_an_answer_gold_or_real(raw: redis.Redis) -> None:
    p, alice = _gold_pipeline(raw)
    found = alice.next()
    assert found is not None
    assert alice.skip(str(found["token"])).status_code == 200
    assert _gold_answers(p) == 0
    assert alice.http.get("/api/progress").json()["answered_today"] == 0  # it was 1
    found = alice.next()
    assert found is not None
    assert alice.answer(str(found["token"]), 1).status_code == 200
    assert alice.http.get("/api/progress").json()["answered_today"] == 1


def test_a_real_skip_and_an_answer_to_a_frame_decided_meanwhile_are_not_answers(
    raw: redis.Redis,
) -> None:
    settings = make_settings(people=["alice"], kappa=1)
    p = build_pipeline(raw, settings, ["alice"])
    alice = p.person("alice")
    alice.login()
    alice.beat()
    frames = open_frames(p, 3)
    p.step(2, machines=False)
    found = alice.next()
    assert found is not None and len(found["next"]) == 1
    assert alice.skip(str(found["token"])).status_code == 200
    for fid in frames:  # decided without her (the page says "Not counted")
        p.r.hset(p.keys.frame(fid), "state", "final")
    later = str(found["next"][0]["token"])
    assert alice.answer(later, 1).json() == {"status": "not_needed"}
    assert alice.http.get("/api/progress").json()["answered_today"] == 0


@pytest.mark.parametrize("failing", ["gold book", "hand"])
def test_a_gold_answer_that_fails_midway_is_kept_and_recorded_once(
    raw: redis.Redis, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    # the gold book's script, or the step that takes the frame out of the hand, meets a
    # Redis error (503: the page sends it again): the frame stays in the hand, and the answer
    # sent again is recorded once
    p, alice = _gold_pipeline(raw)
    found = alice.next()
    assert found is not None
    token = str(found["token"])
    feed = p.app.state.feed
    calls = {"n": 0}
    if failing == "gold book":
        real_answer = feed.gold.answer

        def flaky_answer(person: str, gold_id: str, label: int) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise redis.ConnectionError("Redis went away")
            real_answer(person, gold_id, label)

        monkeypatch.setattr(feed.gold, "answer", flaky_answer)
    else:
        real_send = people.send_answer

        def flaky_send(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 1:
                raise redis.ConnectionError("Redis went away")
            return real_send(*args, **kwargs)

        monkeypatch.setattr(people, "send_answer", flaky_send)
    assert alice.answer(token, 1).status_code == 503  # the page sends it again
    assert alice.next() is not None and alice.next()["token"] == token  # still hers to answer
    assert alice.answer(token, 1).status_code == 200
    assert alice.answer(token, 1).status_code == 409  # and once
    assert _gold_answers(p) == 1
    assert p.r.hlen(p.keys.gold_answers("alice")) == 1
    assert alice.http.get("/api/progress").json()["answered_today"] == 1


def test_the_answer_that_pauses_a_person_counts_though_the_pause_empties_the_hand(
    raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # seen in a walkthrough: the page's /api/next, running while the pausing answer was sent,
    # saw the pause and emptied the hand; the answer (recorded in the gold book) got a 409,
    # the page said "Not counted: that frame was decided meanwhile", and answered today
    # stayed one short. Then the prefetched frame, answered, said the same.
    p, alice = _gold_pipeline(raw, qualification=2)
    p.settings.gold.floor = 0.9  # the gold book's settings
    feed = p.app.state.feed
    real_answer = feed.gold.answer

    def answer_then_next(person: str, gold_id: str, label: int) -> bool:
        recorded = real_answer(person, gold_id, label)
        feed.current(person)  # the page's /api/next in between: paused, the hand is emptied
        return recorded

    monkeypatch.setattr(feed.gold, "answer", answer_then_next)
    for i in range(2):  # two wrong answers: qualified below the floor, paused by the second
        found = alice.next()
        while found is not None and not found["next"]:  # a draw of a gold frame held already
            found = alice.next()  # hands nothing more: the next call draws again
        assert found is not None
        truth = int(alice.http.get(found["image"]).content.decode().rsplit("-", 1)[1]) % 2
        prefetched = str(found["next"][0]["token"])
        res = alice.answer(str(found["token"]), 1 - truth)
        assert (res.status_code, res.json()) == (200, {"status": "sent"}), (i, res.text)
    assert p.r.hexists(p.keys.paused, "alice")
    assert alice.http.get("/api/progress").json()["answered_today"] == 2
    # the frame prefetched before the pause was taken back: refused, and the reply says why
    for res in (alice.answer(prefetched, 1), alice.skip(prefetched)):
        assert res.status_code == 409
        assert res.json()["paused"] is True and "paused" in res.json()["error"]
    assert _gold_answers(p) == 2
    # a token that is simply not held, for a person not paused, says nothing of a pause
    p.r.hdel(p.keys.paused, "alice")
    assert "paused" not in alice.answer(prefetched, 1).json()


def _answer_all_gold(alice: PersonClient) -> int:
    """Answer (rightly) whatever gold alice is handed until she is handed nothing."""
    for answered in range(40):
        found = alice.next()
        if found is None:
            return answered
        truth = int(alice.http.get(found["image"]).content.decode().rsplit("-", 1)[1]) % 2
        assert alice.answer(str(found["token"]), truth).status_code == 200
    raise AssertionError("alice was handed gold for ever")


def test_a_person_who_has_answered_every_gold_item_is_warned_of_once(
    raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # before, nothing said it: a person short of gold.qualification when the gold ran out got
    # no frame for ever, and one qualified was measured no more, without a word
    p, alice = _gold_pipeline(raw, qualification=7)  # 5 items: she cannot qualify
    caplog.set_level(logging.WARNING, "gtx_stream.server.gold_feed")
    assert _answer_all_gold(alice) == 5
    for _ in range(3):  # her page asks again and again: one line
        assert alice.next() is None
    [line] = [r.getMessage() for r in caplog.records if "every gold item" in r.getMessage()]
    assert line == (
        "person alice has answered every gold item (5): they need gold.qualification = 7 "
        "gold answers to qualify and get no frame until then; load more with gtx-stream gold "
        "load DIR --truth CSV"
    )
    more = [gold.GoldImage(f"g{i}", f"g{i}.jpg", f"gold-{i}".encode(), i % 2) for i in (5, 6, 7)]
    gold.load(p.r, p.keys, more)
    p.settings.gold.rate = 1.0  # the gold book's settings: once qualified, gold is still due
    caplog.clear()
    assert _answer_all_gold(alice) == 3  # qualified at 7; then the last item
    assert p.r.hexists(p.keys.labelers, "alice")
    assert alice.next() is None
    [line] = [r.getMessage() for r in caplog.records if "every gold item" in r.getMessage()]
    assert line.startswith("person alice has answered every gold item (8): gold measures them "
                           "no more (their gold record stays 8 right of 8, ")  # fmt: skip


def test_a_person_needing_gold_when_none_is_loaded_is_warned_of_and_others_not(
    raw: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(people=["alice", "bob"], kappa=1)
    settings.labelers[1] = settings.labelers[1].model_copy(update={"accuracy": 0.9})
    settings.gold.qualification = 3
    settings.gold.rate = 1.0
    p = build_pipeline(raw, settings, ["alice", "bob"])
    p.r.hdel(p.keys.labelers, "alice")  # a new person; bob has a configured accuracy
    caplog.set_level(logging.WARNING, "gtx_stream.server.gold_feed")
    for name in ("alice", "bob"):
        person = p.person(name)
        person.login()
        person.beat()
        assert person.next() is None
    assert [r.getMessage() for r in caplog.records] == [
        "person alice: no gold is loaded, and they need gold.qualification = 3 gold answers to "
        "qualify and get no frame until then; load it with gtx-stream gold load DIR --truth CSV"
    ]
