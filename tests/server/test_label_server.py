"""People label through the label server: login by invite, next/answer/skip, the final records
carry their labels under their labeler id (real Redis, real aggregator)."""

from __future__ import annotations

import jsonschema
import pytest

from gtx_stream.core.records import LabelEntry
from gtx_stream.server.openapi import SPEC
from tests.server.conftest import PersonClient, Pipeline, open_frames


def _schema(name: str) -> dict[str, object]:
    return {"$ref": f"#/components/schemas/{name}", "components": SPEC["components"]}


def _label_all(p: Pipeline, people: dict[str, PersonClient], labels: dict[str, int],
               rounds: int = 200) -> None:  # fmt: skip
    for _ in range(rounds):
        p.step(machines=False)
        for name, person in people.items():
            person.beat()
            found = person.next()
            if found is not None:
                jsonschema.validate(found, _schema("Next"))
                res = person.answer(found["token"], labels[name])
                assert res.status_code == 200, res.text
                jsonschema.validate(res.json(), _schema("Settled"))
        if p.r.zcard(p.keys.open_frames) == 0:
            return
    raise AssertionError("frames were not finalised")


def test_people_label_by_invite_and_the_final_records_carry_their_labels(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    alice, bob = p.person("alice"), p.person("bob")
    alice.login()
    bob.login()
    alice.beat()
    bob.beat()
    frames = open_frames(p, 6)
    p.step(3, machines=False)

    # alice skips her first request: nothing counted, nothing charged, asked of bob at once
    skipper = alice if alice.next() is not None else bob
    other = bob if skipper is alice else alice
    first = skipper.next()
    assert first is not None
    again = skipper.next()
    assert again is not None and again["token"] == first["token"]  # a reload: the same frame
    img = skipper.http.get(first["image"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg"
    assert img.content == b"jpeg"
    assert skipper.skip(first["token"]).status_code == 200
    assert skipper.skip(first["token"]).status_code == 409  # once

    _label_all(p, {"alice": alice, "bob": bob}, {"alice": 1, "bob": 0})
    final = p.final()
    assert set(final) == set(frames)
    skipped = [fid for fid, rec in final.items() if skipper.labeler_id not in rec["labelers"]]
    assert len(skipped) == 1  # the one frame the skipper gave back; the other labeled it
    for rec in final.values():
        pairs = dict(zip(eval(rec["labelers"]), eval(rec["labels"]), strict=True))
        assert set(pairs) <= {"alice", "bob"}
        assert all(label == {"alice": 1, "bob": 0}[who] for who, label in pairs.items())
        if rec["frame_id"] in skipped:
            assert pairs == {other.labeler_id: {"alice": 1, "bob": 0}[other.labeler_id]}
    stats = {k.decode(): v.decode() for k, v in p.r.hgetall(p.keys.stats).items()}
    assert stats["requests_skipped"] == "1" and "requests_failed" not in stats
    res = alice.http.get("/api/progress")
    assert res.headers["server-timing"].startswith("app;dur=")  # as /api/next's
    progress = res.json()
    jsonschema.validate(progress, _schema("Progress"))
    assert progress["labeler"] == "alice" and progress["waiting"] == 0
    assert progress["answered_today"] == sum(
        1 for rec in final.values() if "alice" in rec["labelers"]
    )


def test_the_page_and_its_files_are_served(pipeline: Pipeline) -> None:
    alice = pipeline.person("alice")
    alice.login()
    page = alice.http.get("/")
    for element in ("frame", "question", "yes", "no", "skip", "undo", "progress", "logout"):
        assert f'id="{element}"' in page.text
    assert "Is the part in this frame correct?" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for name in ("label.js", "label.css"):
        assert alice.http.get(f"/static/{name}").status_code == 200
    spec = alice.http.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")


def test_every_api_route_is_in_the_openapi_description(pipeline: Pipeline) -> None:
    from starlette.routing import Route

    paths = {r.path for r in pipeline.app.routes if isinstance(r, Route)}
    api = {path for path in paths if path.startswith("/api/") or path == "/logout"}
    assert api - {"/api/openapi.json"} == set(SPEC["paths"])


def test_the_labeler_of_a_label_is_the_sessions_never_the_forms(pipeline: Pipeline) -> None:
    p = pipeline
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 1)
    p.step(2, machines=False)
    found = alice.next()
    assert found is not None
    res = alice.post("/api/answer", {"token": found["token"], "label": 1, "labeler": "bob"})
    assert res.status_code == 200
    ((_, fields),) = p.r.xrange(p.keys.labels)
    entry = LabelEntry.from_fields({k.decode(): v.decode() for k, v in fields.items()})
    assert entry.labeler == "alice" and entry.label == 1


@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_a_person_holds_one_request_on_screen_and_prefetch_more(raw: object, prefetch: int) -> None:
    from tests.server.conftest import build_pipeline, make_settings

    settings = make_settings(people=["alice"], kappa=1)
    settings.label_server.prefetch = prefetch
    p = build_pipeline(raw, settings, ["alice"])  # type: ignore[arg-type]
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 6)
    p.step(2, machines=False)
    found = alice.next()
    assert found is not None and len(found["next"]) == prefetch
    tokens = [found["token"]] + [h["token"] for h in found["next"]]
    # images of the held requests are served (preloaded by the page)
    assert all(alice.http.get(f"/api/image/{t}").status_code == 200 for t in tokens)
    waiting = alice.http.get("/api/progress").json()["waiting"]
    assert waiting == 6
    alice.http.close()


def test_waiting_counts_only_what_the_person_could_still_be_handed(raw: object) -> None:
    # a lease ran out and the frames were decided without her: their jobs stay on her queue,
    # but nothing of them will be handed to her
    import time

    from tests.server.conftest import build_pipeline, make_settings

    settings = make_settings(people=["alice"], kappa=1)
    settings.labelers[0] = settings.labelers[0].model_copy(update={"lease_seconds": 0.2})
    settings.label_server.prefetch = 1
    p = build_pipeline(raw, settings, ["alice"])  # type: ignore[arg-type]
    alice = p.person("alice")
    alice.login()
    alice.beat()
    decided = open_frames(p, 4)
    p.step(2, machines=False)
    assert alice.next() is not None  # two held, two on her queue
    queue = "rq:queue:" + p.keys.queue("alice")
    assert p.r.llen(queue) == 2
    deadline = time.time() + 10
    while len(p.final()) < len(decided) and time.time() < deadline:
        time.sleep(0.05)
        p.step(machines=False)  # the sweeper: nobody else is left, the frames are final
    assert set(p.final()) == set(decided)
    assert p.r.llen(queue) == 2  # their jobs are still queued
    open_frames(p, 3, start=10)
    p.step(2, machines=False)
    assert alice.http.get("/api/progress").json()["waiting"] == 3
    found = alice.next()
    assert found is not None and len(found["next"]) == 1
    assert alice.http.get("/api/progress").json()["waiting"] == 3  # two held, one queued
    alice.http.close()


def test_waiting_checks_a_bounded_number_of_queued_requests(
    raw: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every queued request checked cost about 0.3 ms: past WAITING_CHECKED the queue's length
    # is counted as it is, so a poll costs the same however long the queue
    from gtx_stream.server import feed
    from tests.server.conftest import build_pipeline, make_settings

    settings = make_settings(people=["alice"], kappa=1)
    p = build_pipeline(raw, settings, ["alice"])  # type: ignore[arg-type]
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 30)
    p.step(2, machines=False)
    assert p.r.llen("rq:queue:" + p.keys.queue("alice")) == 30
    checked = []
    real = feed.Feed._request
    monkeypatch.setattr(feed.Feed, "_request",
                        lambda self, *a, **k: checked.append(1) or real(self, *a, **k))  # fmt: skip
    assert alice.http.get("/api/progress").json()["waiting"] == 30
    assert len(checked) == 30
    checked.clear()
    monkeypatch.setattr(feed, "WAITING_CHECKED", 10)
    assert alice.http.get("/api/progress").json()["waiting"] == 30
    assert len(checked) == 10
    alice.http.close()


def test_a_reload_shows_the_frame_the_first_reply_put_on_screen(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the hand is read oldest first, then by token; the reply that took the frames gave them
    # in the order taken, so with tokens that sort the other way a reload showed another frame
    from gtx_stream.store import people

    tokens = iter(f"t{9 - i}" for i in range(10))
    monkeypatch.setattr(people, "new_token", lambda: next(tokens))
    p = pipeline
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 2)
    p.step(2, machines=False)
    first = alice.next()
    assert first is not None and len(first["next"]) == 1
    again = alice.next()
    assert again is not None
    assert [again["token"], again["next"][0]["token"]] == [
        first["token"],
        first["next"][0]["token"],
    ]


def test_a_person_not_logged_in_is_told_to_ask_for_a_link_not_to_run_a_command(
    pipeline: Pipeline,
) -> None:
    from starlette.testclient import TestClient

    alice = pipeline.person("alice")
    alice.login()  # her link is used now
    stranger = TestClient(pipeline.app)
    pipeline.clients.append(stranger)
    pages = [stranger.get("/"), stranger.get(f"/login/{alice.invite}")]
    assert [page.status_code for page in pages] == [401, 403]
    api = stranger.get("/api/next").json()["error"]
    for text in (pages[0].text, pages[1].text, api):
        said = " ".join(text.split())
        assert "ask whoever runs the labeling for" in said.lower(), said
        # the command is the admin's, and said to be
        assert "gtx-stream labelers invite" not in said or "whoever runs it" in said, said


def test_waiting_with_an_acl_that_cannot_read_the_queue_counts_its_length(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a label server user from an ACL file without +lrange on people's queues: the count
    # of before (every job on the queue), not a 503
    import redis

    p = pipeline
    alice = p.person("alice")
    alice.login()
    alice.beat()
    open_frames(p, 4)
    p.step(2, machines=False)
    assert alice.next() is not None
    feed = p.app.state.feed

    def refused(*args: object) -> None:
        raise redis.exceptions.NoPermissionError("no permissions to run the 'lrange' command")

    monkeypatch.setattr(feed.q, "lrange", refused)
    res = alice.http.get("/api/progress")
    assert res.status_code == 200 and res.json()["waiting"] == 4
