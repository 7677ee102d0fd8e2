"""Security of the label server: sessions, CSRF, one-time invites, a person's own requests only,
no replay (real Redis)."""

from __future__ import annotations

import json
import logging
import time

import pytest
from starlette.testclient import TestClient

from gtx_stream.core.records import SKIPPED_REASON, LabelEntry, decode_fields
from gtx_stream.store import people
from gtx_stream.store.people import PeopleKeys, today
from tests.server.conftest import PersonClient, Pipeline, open_frames


def _holding(p: Pipeline, *people: PersonClient) -> dict[str, dict[str, object]]:
    for person in people:
        person.login()
        person.beat()
    open_frames(p, 4)
    p.step(3, machines=False)
    found = {person.labeler_id: person.next() for person in people}
    assert all(found.values()), found
    return found  # type: ignore[return-value]


def test_an_invite_link_works_once(pipeline: Pipeline) -> None:
    alice = pipeline.person("alice")
    alice.login()
    again = TestClient(pipeline.app)
    pipeline.clients.append(again)
    res = again.get(f"/login/{alice.invite}")
    assert res.status_code == 403 and "not valid" in res.text
    assert "gtx_session" not in again.cookies
    assert again.get("/api/next").status_code == 401


def test_the_session_cookie_is_httponly_and_samesite_strict(pipeline: Pipeline) -> None:
    alice = pipeline.person("alice")
    res = alice.http.get(f"/login/{alice.invite}")
    cookie = res.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie


def test_an_invite_for_a_machine_labeler_or_garbage_is_refused(pipeline: Pipeline) -> None:
    from gtx_stream.store.people import create_invite

    token = create_invite(pipeline.r, pipeline.keys, "m1", 60)  # not a person of the config
    client = TestClient(pipeline.app)
    pipeline.clients.append(client)
    assert client.get(f"/login/{token}").status_code == 403
    assert client.get("/login/" + "x" * 500).status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/next"), ("GET", "/api/progress"), ("GET", "/api/image/abc"),
     ("POST", "/api/answer"), ("POST", "/api/skip"), ("POST", "/api/heartbeat"),
     ("POST", "/logout")],
)  # fmt: skip
def test_no_cookie_is_401(pipeline: Pipeline, method: str, path: str) -> None:
    client = TestClient(pipeline.app)
    pipeline.clients.append(client)
    res = client.request(method, path, json={"token": "abc", "label": 1})
    assert res.status_code == 401 and "error" in res.json()
    assert client.get("/").status_code == 401


def test_a_post_without_the_csrf_token_is_refused(pipeline: Pipeline) -> None:
    p = pipeline
    alice = p.person("alice")
    found = _holding(p, alice)["alice"]
    for headers in ({}, {"X-CSRF-Token": "wrong"}, {"X-CSRF-Token": ""}):
        res = alice.http.post("/api/answer", json={"token": found["token"], "label": 1},
                              headers=headers)  # fmt: skip
        assert res.status_code == 403, headers
        assert alice.http.post("/api/heartbeat", headers=headers).status_code == 403
    assert p.r.xlen(p.keys.labels) == 0
    assert alice.answer(str(found["token"]), 1).status_code == 200  # with it: accepted


def test_a_person_cannot_answer_or_see_another_persons_request(pipeline: Pipeline) -> None:
    p = pipeline
    alice, bob = p.person("alice"), p.person("bob")
    found = _holding(p, alice, bob)
    theirs = str(found["alice"]["token"])
    assert bob.http.get(f"/api/image/{theirs}").status_code == 404
    for res in (bob.answer(theirs, 1), bob.skip(theirs)):
        assert res.status_code == 409 and "not in your hand" in res.json()["error"]
    assert p.r.xlen(p.keys.labels) == 0
    assert alice.answer(theirs, 1).status_code == 200


def test_a_replayed_answer_is_refused_and_reaches_the_stream_once(pipeline: Pipeline) -> None:
    p = pipeline
    alice = p.person("alice")
    token = str(_holding(p, alice)["alice"]["token"])
    assert alice.answer(token, 1).status_code == 200
    for res in (alice.answer(token, 1), alice.answer(token, 0), alice.skip(token)):
        assert res.status_code == 409
    assert p.r.xlen(p.keys.labels) == 1
    assert alice.http.get(f"/api/image/{token}").status_code == 404


def test_logout_ends_the_session(pipeline: Pipeline) -> None:
    alice = pipeline.person("alice")
    alice.login()
    old_session = alice.http.cookies["gtx_session"]
    out = alice.post("/logout")
    assert out.status_code == 204
    assert 'gtx_session=""' in out.headers["set-cookie"]  # the browser drops the cookie
    assert alice.http.get("/api/next").status_code == 401
    # the session is gone in Redis, not just the cookie: the old cookie, replayed, is refused
    assert not pipeline.r.keys(f"{pipeline.keys.prefix}:person:session:*")
    with TestClient(pipeline.app, base_url="http://testserver") as replay:
        replay.cookies.set("gtx_session", old_session)
        assert replay.get("/api/next").status_code == 401
        assert replay.get("/api/progress").status_code == 401
        headers = {"X-CSRF-Token": alice.csrf}
        assert replay.post("/api/heartbeat", json={}, headers=headers).status_code == 401
        assert replay.get("/").status_code == 401  # the page asks to log in


def test_logging_out_lets_the_held_frames_go_to_someone_else_at_once(pipeline: Pipeline) -> None:
    """What a person holds when they log out is skipped ("Can't tell": not counted, not
    charged), so it is asked of another labeler now, not when its lease runs out."""
    p = pipeline
    alice = p.person("alice")
    held = _holding(p, alice)["alice"]
    hand = p.r.hgetall(f"{p.keys.prefix}:person:alice:hand")
    assert hand, "alice holds nothing"
    assert held["token"] in {k.decode() if isinstance(k, bytes) else k for k in hand}
    frames = {json.loads(v)["frame_id"] for v in hand.values()}
    assert p.r.zscore(p.keys.live, "alice") is not None
    assert alice.post("/logout").status_code == 204
    assert not p.r.exists(f"{p.keys.prefix}:person:alice:hand")
    # not live any more (a walkthrough saw status say "live yes" after the logout: for
    # aggregator.live_seconds the aggregator could still send frames, to wait for the lease)
    assert p.r.zscore(p.keys.live, "alice") is None
    skipped = [LabelEntry.from_fields(decode_fields(f)) for _, f in p.r.xrange(p.keys.labels)]
    assert {e.frame_id for e in skipped} == frames and all(e.label is None for e in skipped)
    assert all(e.reason == SKIPPED_REASON for e in skipped)
    assert int(p.r.get(f"{p.keys.prefix}:person:alice:answered:{today()}") or 0) == 0


def _hand(p: Pipeline, person: str = "alice") -> dict[str, str]:
    raw = p.r.hgetall(PeopleKeys(p.keys).hand(person))
    return {k.decode(): v.decode() for k, v in raw.items()}


def _labels(p: Pipeline) -> list[LabelEntry]:
    return [LabelEntry.from_fields(decode_fields(f)) for _, f in p.r.xrange(p.keys.labels)]


def test_logging_out_on_one_device_leaves_the_hand_to_the_other(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    """The hand is the person's, not a session's: logged in on a laptop and on a phone, a
    logout on the laptop ends that session only, and the phone keeps showing and answering
    what it holds; the logout on the phone, the last session, lets the rest go as before."""
    p = pipeline
    laptop, phone = p.person("alice"), p.person("alice")
    shown = _holding(p, laptop)["alice"]
    phone.login()
    assert phone.next() == shown  # one hand: both show the same frame
    held = _hand(p)
    assert len(held) == 2  # the frame on screen and the one prefetched
    caplog.set_level(logging.INFO, logger="gtx_stream.server.api")
    assert laptop.post("/logout").status_code == 204
    assert "alice logged out of one session: 1 other live" in caplog.text
    assert p.r.zscore(p.keys.live, "alice") is not None  # the phone's page still beats
    assert laptop.http.get("/api/next").status_code == 401  # that session did end
    assert _hand(p) == held and p.r.xlen(p.keys.labels) == 0  # untouched, nothing skipped
    assert phone.next() == shown
    assert phone.answer(str(shown["token"]), 1).json() == {"status": "sent"}
    [label] = _labels(p)
    assert (label.label, label.labeler) == (1, "alice")
    assert label.frame_id == json.loads(held[str(shown["token"])])["frame_id"]
    assert phone.next() is not None
    left = {json.loads(v)["frame_id"] for v in _hand(p).values()}
    assert left and label.frame_id not in left
    assert phone.post("/logout").status_code == 204
    assert "alice logged out of their last session" in caplog.text
    assert not p.r.exists(PeopleKeys(p.keys).hand("alice"))
    skipped = _labels(p)[1:]
    assert {e.frame_id for e in skipped} == left and len(skipped) == len(left)
    assert all(e.label is None and e.reason == SKIPPED_REASON for e in skipped)
    assert not p.r.exists(PeopleKeys(p.keys).sessions("alice"))  # no list left behind


def test_an_expired_session_does_not_keep_the_hand(pipeline: Pipeline) -> None:
    """A session that ran out (its TTL) is not live: the logout of the other lets the hand go."""
    p = pipeline
    laptop, phone = p.person("alice"), p.person("alice")
    _holding(p, laptop)
    phone.login()
    p.r.pexpire(PeopleKeys(p.keys).session(phone.http.cookies["gtx_session"]), 50)
    time.sleep(0.2)
    assert phone.http.get("/api/next").status_code == 401
    frames = {json.loads(v)["frame_id"] for v in _hand(p).values()}
    assert frames
    assert laptop.post("/logout").status_code == 204
    assert not p.r.exists(PeopleKeys(p.keys).hand("alice"))
    assert {e.frame_id for e in _labels(p)} == frames
    assert all(e.reason == SKIPPED_REASON for e in _labels(p))


def test_end_session_counts_the_persons_other_live_sessions_only(pipeline: Pipeline) -> None:
    r, keys = pipeline.r, pipeline.keys
    listed = PeopleKeys(keys).sessions("alice")
    first, _ = people.create_session(r, keys, "alice", 3600)
    second, _ = people.create_session(r, keys, "alice", 3600)
    short, _ = people.create_session(r, keys, "alice", 1)
    people.create_session(r, keys, "bob", 3600)  # someone else's: never counted
    # listed but never written (the server died between the two steps of create_session)
    r.zadd(listed, {"0" * 64: time.time() + 3600})
    # as long as its longest session, not its newest
    assert 3590 < r.ttl(listed) <= 3600 and r.ttl(PeopleKeys(keys).sessions("bob")) > 3590
    assert people.end_session(r, keys, first, "alice") == 2  # second and short
    time.sleep(1.1)  # short expires
    assert people.get_session(r, keys, short) is None
    assert people.end_session(r, keys, second, "alice") == 0
    # the expired one is pruned from the list by its score; the unwritten one waits for its own
    assert [m.decode() for m in r.zrange(listed, 0, -1)] == ["0" * 64]
    assert people.end_session(r, keys, second, "alice") == 0  # ending twice is harmless


@pytest.mark.parametrize(
    "body",
    [None, [], "x", {"token": 3, "label": 1}, {"token": "", "label": 1}, {"token": "t"},
     {"token": "t", "label": 2}, {"token": "t", "label": True}, {"token": "t", "label": "1"},
     {"token": "t" * 300, "label": 1}],
)  # fmt: skip
def test_bad_bodies_are_400_with_a_message(pipeline: Pipeline, body: object) -> None:
    alice = pipeline.person("alice")
    alice.login()
    res = alice.http.post("/api/answer", json=body, headers={"X-CSRF-Token": alice.csrf})
    assert res.status_code == 400 and res.json()["error"]
    res = alice.http.post("/api/answer", content=b"{not json", headers={"X-CSRF-Token": alice.csrf})
    assert res.status_code == 400
    big = b'{"token": "' + b"x" * 5000 + b'"}'
    res = alice.http.post("/api/skip", content=big, headers={"X-CSRF-Token": alice.csrf})
    assert res.status_code == 413
