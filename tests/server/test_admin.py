"""The /admin dashboard (gtx_stream/server/admin.py) against a real Redis with finalised frames.

Login: nothing without a session (a redirect for the page, 401 for the JSON and the
thumbnails), a wrong password or a missing CSRF token refused, a labeler's session opens
nothing; the figures match Redis; every plot parses as XML; thumbnails only for the admin,
and only while the JPEG is in Redis.
"""

from __future__ import annotations

import json
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from pydantic import SecretStr

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Mount  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from gtx_stream.config import LabelerSettings, Settings  # noqa: E402
from gtx_stream.ops import metrics  # noqa: E402
from gtx_stream.server import admin as admin_module  # noqa: E402
from gtx_stream.server.admin import COOKIE, admin_routes  # noqa: E402
from gtx_stream.server.state import ServerState  # noqa: E402
from gtx_stream.store import people  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402
from tests.aggregator_harness import (  # noqa: E402
    Capture,
    make_aggregator,
    open_frame,
    register,
    run_until_idle,
)

PASSWORD = "correct horse battery staple"
ACCURACIES = {"m1": 0.9, "m2": 0.8, "m3": 0.75}
SVG = "{http://www.w3.org/2000/svg}"


def settings_with(password: str) -> Settings:
    """Settings with ``label_server.admin_password`` (set by copy, which also works while the
    field is being added to the config)."""
    base = Settings(
        labelers=[
            LabelerSettings(id="m1", backend="simulated", accuracy=0.9),
            LabelerSettings(id="alice", backend="human"),
        ]
    )
    server = base.label_server.model_copy(update={"admin_password": SecretStr(password)})
    return base.model_copy(update={"label_server": server})


@pytest.fixture
def rb(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)  # bytes, as the label server's
    yield client
    client.close()


def make_client(rb: redis.Redis, keys: Keys, password: str = PASSWORD) -> TestClient:
    state = ServerState(rb, keys, settings_with(password))
    app = Starlette(routes=[Mount("/admin", routes=admin_routes(state))])
    return TestClient(app, follow_redirects=False)


def login(client: TestClient, password: str = PASSWORD) -> Any:
    form = client.get("/admin/login")
    assert form.status_code == 200
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return client.post("/admin/login", data={"csrf": csrf.group(1), "password": password})


def finalised_pipeline(r: redis.Redis, keys: Keys, n: int = 8) -> list[str]:
    register(r, keys, ACCURACIES)
    capture = Capture()
    agg = make_aggregator(r, keys, capture, tau=0.95, kappa=3, budget=100)
    frames = [open_frame(r, keys, i, truth=i % 2) for i in range(n)]
    run_until_idle(agg, r, keys, capture, ACCURACIES)
    assert r.xlen(keys.final) == n
    return frames


@pytest.fixture
def pipeline(r: redis.Redis, keys: Keys) -> list[str]:
    return finalised_pipeline(r, keys)


def test_nothing_without_a_session(rb: redis.Redis, keys: Keys, pipeline: list[str]) -> None:
    client = make_client(rb, keys)
    page = client.get("/admin/")
    assert page.status_code == 303 and page.headers["location"] == "/admin/login"
    assert client.get("/admin/api/dashboard").status_code == 401
    entry_id = rb.xrange(keys.final)[0][0].decode()
    assert client.get(f"/admin/thumbnail/{entry_id}").status_code == 401
    # a made-up cookie is no session either
    client.cookies.set(COOKIE, "not-a-session", path="/admin")
    assert client.get("/admin/api/dashboard").status_code == 401


def test_wrong_password_and_missing_csrf_are_refused(rb: redis.Redis, keys: Keys) -> None:
    client = make_client(rb, keys)
    wrong = login(client, "guess")
    assert wrong.status_code == 401 and "Wrong password" in wrong.text
    assert COOKIE not in wrong.cookies
    assert client.get("/admin/api/dashboard").status_code == 401
    # the right password without the login form's token (another site posting it)
    fresh = make_client(rb, keys)
    no_csrf = fresh.post("/admin/login", data={"password": PASSWORD})
    assert no_csrf.status_code == 403 and COOKIE not in no_csrf.cookies
    assert fresh.get("/admin/api/dashboard").status_code == 401


def test_no_password_configured_lets_no_one_in(rb: redis.Redis, keys: Keys) -> None:
    client = make_client(rb, keys, password="")
    assert "No admin password is set" in client.get("/admin/login").text
    assert login(client, "").status_code == 403
    assert client.get("/admin/api/dashboard").status_code == 401


def test_login_attempts_are_limited(rb: redis.Redis, keys: Keys) -> None:
    client = make_client(rb, keys)
    for _ in range(admin_module.MAX_FAILURES):
        assert login(client, "guess").status_code == 401
    assert login(client).status_code == 429  # even the right one, for a minute
    assert 0 < rb.ttl(keys.admin_login_failures) <= 60


def test_a_labelers_session_opens_nothing(rb: redis.Redis, keys: Keys) -> None:
    session_id, _ = people.create_session(rb, keys, "alice", ttl=600)
    client = make_client(rb, keys)
    for name in (COOKIE, "session", "gtx_session", "gtx_person"):
        client.cookies.set(name, session_id, path="/admin")
    assert client.get("/admin/api/dashboard").status_code == 401
    assert client.get("/admin/").status_code == 303


def test_login_logout_and_csrf(rb: redis.Redis, keys: Keys) -> None:
    client = make_client(rb, keys)
    ok = login(client)
    assert ok.status_code == 303 and ok.headers["location"] == "/admin/"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
    assert rb.ttl(keys.admin_session(admin_module._hash(client.cookies[COOKIE]))) > 0
    page = client.get("/admin/")
    assert page.status_code == 200
    for element in ("opened-per-minute", "labels-per-frame", "labelers", "thumbnails", "budget"):
        assert f'id="{element}"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    assert client.post("/admin/logout").status_code == 403  # no token: still logged in
    assert client.get("/admin/api/dashboard").status_code == 200
    out = client.post("/admin/logout", headers={"X-CSRF-Token": csrf.group(1)})
    assert out.status_code == 303
    assert client.get("/admin/api/dashboard").status_code == 401
    assert not rb.keys(f"{keys.prefix}:admin:session:*")


def test_figures_match_redis(
    rb: redis.Redis, r: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    r.zadd(keys.live, {"m3": time.time() - 3600})  # m3 away for an hour
    r.hset(keys.paused, "alice", json.dumps({"reason": "interval below floor 0.6"}))
    client = make_client(rb, keys)
    assert login(client).status_code == 303
    data = client.get("/admin/api/dashboard").json()
    fig = data["figures"]
    stats, budget = r.hgetall(keys.stats), r.hgetall(keys.budget)
    finalised = int(stats["frames_finalised"])
    assert fig["frames"] == {"open": 0, "opened": len(pipeline), "finalised": finalised,
                             "dead_letters": 0}  # fmt: skip
    assert fig["budget"] == {"limit": 100, "spent": int(budget["spent"]),
                             "left": 100 - int(budget["spent"]),
                             "labels_applied": int(stats["labels_applied"])}  # fmt: skip
    finals = [fields for _, fields in r.xrevrange(keys.final)]
    n_labels = [int(f["n_labels"]) for f in finals]
    per_frame = fig["labels_per_frame"]
    assert per_frame["recent_frames"] == len(pipeline)
    assert sum(per_frame["frames"]) == len(pipeline)  # all finalised within this minute
    assert per_frame["recent_mean"] == pytest.approx(sum(n_labels) / len(n_labels), abs=1e-3)
    rows = {row["id"]: row for row in fig["labelers"]}
    assert set(rows) == {"m1", "m2", "m3", "alice"}
    assert rows["m1"]["kind"] == "machine" and rows["m2"]["kind"] == "unknown"
    assert rows["alice"]["kind"] == "person" and not rows["alice"]["registered"]
    assert rows["alice"]["paused"] == "interval below floor 0.6"
    assert rows["m1"]["live"] and not rows["m3"]["live"]
    assert rows["m3"]["last_seen_s"] == pytest.approx(3600, abs=5)
    for lab, acc in ACCURACIES.items():
        assert rows[lab]["accuracy"] == acc
        assert rows[lab]["labels"] == int(stats.get(f"labels:{lab}", 0))
    thumbs = fig["thumbnails"]
    assert [t["frame_id"] for t in thumbs] == [f["frame_id"] for f in finals][: len(thumbs)]
    assert thumbs[0]["label"] == int(finals[0]["label"])
    assert thumbs[0]["confidence"] == pytest.approx(float(finals[0]["confidence"]))
    assert all(t["has_image"] for t in thumbs)
    assert r.zcard(keys.dashboard_samples) == 1  # the read took a sample
    assert 'data-labeler="alice"' in data["html"]["labelers"]
    assert "1 paused: alice" in data["html"]["labelers"]


def test_a_person_not_registered_shows_their_gold_record(
    rb: redis.Redis, r: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    # seen in a walkthrough: a person paused after 4 gold answers (0.167, [0.005, 0.522] in
    # gtx-stream status) showed "-" for accuracy, interval and gold, "not measured yet" in
    # the plot and "never seen" as live; so did a person still qualifying
    score = {"accuracy": 0.75, "correct": 2, "lower": 0.19, "total": 2, "upper": 0.99}
    r.hset(keys.gold_scores, "alice", json.dumps(score))
    client = make_client(rb, keys)
    assert login(client).status_code == 303

    def alice() -> tuple[dict[str, Any], str]:
        data = client.get("/admin/api/dashboard").json()
        row = next(row for row in data["figures"]["labelers"] if row["id"] == "alice")
        html = data["html"]["labelers"]
        return row, html[html.index('<tr data-labeler="alice"') :].split("</tr>")[0]

    row, cells = alice()  # qualifying: 2 of gold.qualification (10)
    assert (row["accuracy"], row["lower"], row["upper"], row["n"]) == (0.75, 0.19, 0.99, 2)
    assert row["source"] == "gold, qualifying (2 of 10)" and not row["registered"]
    assert "<td>0.750</td><td>0.190 – 0.990</td><td>gold, qualifying (2 of 10)</td>" in cells
    score = {"accuracy": 1 / 6, "correct": 0, "lower": 0.005, "total": 4, "upper": 0.522}
    r.hset(keys.gold_scores, "alice", json.dumps(score))
    r.hset(keys.paused, "alice", json.dumps({"reason": "interval below the floor 0.6"}))
    row, cells = alice()  # paused: not live, and the pause's record
    assert (row["source"], row["n"], row["upper"]) == ("gold", 4, 0.522)
    assert "<td>0.167</td><td>0.005 – 0.522</td><td>gold</td><td>4</td>" in cells
    assert "never seen" not in cells
    data = client.get("/admin/api/dashboard").json()
    assert '<circle class="accuracy" data-labeler="alice"' in data["html"]["labelers"]
    assert "not measured yet" not in data["html"]["labelers"]


def test_a_person_who_has_answered_every_gold_item_is_named(
    rb: redis.Redis, r: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    client = make_client(rb, keys)
    assert login(client).status_code == 303

    def note() -> str | None:
        html = client.get("/admin/api/dashboard").json()["html"]["labelers"]
        found = re.search(r'<p class="warning" id="gold-used-up">(.*?)</p>', html)
        return found.group(1) if found else None

    r.hset(keys.gold_stats, "gold_items", 2)
    score = {"accuracy": 0.75, "correct": 2, "lower": 0.19, "total": 1, "upper": 0.99}
    r.hset(keys.gold_scores, "alice", json.dumps(score))
    assert note() is None  # one item left to her
    r.hset(keys.gold_scores, "alice", json.dumps({**score, "total": 2}))
    assert note() == ("1 answered every gold item, so gold measures them no more: alice (not "
                      "qualified: gets no frame); gtx-stream gold load adds more")  # fmt: skip
    r.hset(keys.paused, "alice", json.dumps({"reason": "interval below the floor 0.6"}))
    assert note() is None  # paused: gold is not what she waits for


def test_every_plot_is_xml(rb: redis.Redis, keys: Keys, pipeline: list[str]) -> None:
    client = make_client(rb, keys)
    login(client)
    data = client.get("/admin/api/dashboard").json()
    svgs = 0
    for element, markup in data["html"].items():
        root = ET.fromstring(f"<div>{markup}</div>")  # each part is well-formed XML
        for svg in root.iter(f"{SVG}svg"):
            svgs += 1
            assert svg.find(f"{SVG}title") is not None, element
    assert svgs == 4
    acc = ET.fromstring(f"<div>{data['html']['labelers']}</div>")
    dots = {c.get("data-labeler") for c in acc.iter(f"{SVG}circle") if c.get("class") == "accuracy"}
    assert dots == set(ACCURACIES)  # alice has no accuracy yet: no dot
    per_frame = ET.fromstring(data["html"]["labels-per-frame"])
    assert any(el.get("data-series") == "labels per frame" for el in per_frame.iter())


def test_thumbnails_only_for_the_admin_and_while_in_redis(
    rb: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    newest_id, fields = rb.xrevrange(keys.final, count=1)[0]
    entry_id = newest_id.decode()
    client = make_client(rb, keys)
    login(client)
    got = client.get(f"/admin/thumbnail/{entry_id}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == rb.get(fields[b"image_key"])
    assert client.get("/admin/thumbnail/0-1").status_code == 404
    assert client.get("/admin/thumbnail/..%2Fgtx:budget").status_code == 404
    rb.delete(fields[b"image_key"])  # exported: the exporter deleted it
    assert client.get(f"/admin/thumbnail/{entry_id}").status_code == 404
    fig = client.get("/admin/api/dashboard").json()
    first = fig["figures"]["thumbnails"][0]
    assert first["entry_id"] == entry_id and not first["has_image"]
    assert 'class="placeholder"' in fig["html"]["thumbnails"]
    assert fig["html"]["thumbnails"].count("<img") == len(fig["figures"]["thumbnails"]) - 1
    anonymous = make_client(rb, keys)
    second = rb.xrevrange(keys.final, count=2)[1][0].decode()
    assert anonymous.get(f"/admin/thumbnail/{second}").status_code == 401


def test_the_first_view_says_measuring_for_rates_not_zero(
    rb: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    """Rates come from the samples the dashboard takes while open: on its first opening none
    covers a minute yet. The page says so (it showed 0.0 frames opened last minute, and a flat
    zero line for the hour, while frames went through); the totals are real at once."""
    client = make_client(rb, keys)
    login(client)
    page = client.get("/admin/").text
    for cell in ("rate-opened", "rate-finalised"):
        found = re.search(rf'id="{cell}"><span class="([^"]+)">([^<]*)<', page)
        assert found is not None and found.groups() == ("value pending", "measuring…"), cell
    assert '<span class="value">0.0</span>' not in page
    assert re.search(r'id="frames-finalised"><span class="value">8<', page)
    assert 'id="rates-note"' in page and "the first whole minute shows at" in page
    fig = client.get("/admin/api/dashboard").json()["figures"]["per_minute"]
    assert all(v is None for v in fig["opened"][:-1]) and fig["measured_since"] is not None
    svg = client.get("/admin/api/dashboard").json()["html"]["opened-per-minute"]
    assert 'class="series"' not in svg  # no line drawn at zero


def test_rates_show_once_samples_cover_the_minute(
    rb: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    client = make_client(rb, keys)
    login(client)
    now = time.time()
    rb.zadd(keys.dashboard_samples, {metrics.Sample(now - 180, 0, 0, 0, 0).to_json(): now - 180})
    data = client.get("/admin/api/dashboard").json()  # 8 opened over the last 3 minutes
    pm = data["figures"]["per_minute"]
    assert pm["opened"][-2] is not None and pm["opened"][-2] > 0
    assert pm["opened"][0] is None  # before the oldest sample: not measured, not 0
    summary = data["html"]["summary"]
    assert "measuring" not in summary
    assert f'id="rate-opened"><span class="value">{round(pm["opened"][-2], 1)}<' in summary
    assert "earlier minutes are not shown" in data["html"]["opened-per-minute"]
    assert 'class="series"' in data["html"]["opened-per-minute"]


# --- rates from samples (no server) -------------------------------------------------------


def test_measured_minutes_leave_out_what_the_samples_do_not_cover() -> None:
    from gtx_stream.server.admin_view import measured_minutes

    pm = {"minutes": [0.0, 60.0, 120.0, 180.0], "opened": [1.0, 2.0, 3.0, 4.0]}
    # a complete minute needs samples from its start to within one sampling period of its
    # end; the current one, counted so far, from its start
    assert measured_minutes(pm, 70.0, 176.0)["opened"] == [None, None, 3.0, 4.0]
    assert measured_minutes(pm, 70.0, 170.0)["opened"] == [None, None, None, 4.0]
    assert measured_minutes(pm, 0.0, 190.0)["opened"] == [1.0, 2.0, 3.0, 4.0]
    assert measured_minutes(pm, 185.0, 185.0)["opened"] == [None] * 4
    none = measured_minutes(pm, None, None)
    assert none["opened"] == [None] * 4 and none["measured_since"] is None


def test_per_minute_spreads_growth_over_the_minutes_it_spans() -> None:
    now = 60.0 * 1000 + 30  # half way into a minute
    s = metrics.Sample
    samples = [
        s(now - 180, 0, 0, 0, 0),
        s(now - 120, 60, 30, 90, 80),  # 60 opened over [-180, -120]: half in each minute
        s(now - 60, 60, 30, 90, 80),  # nothing
        s(now, 66, 36, 100, 90),  # 6 over [-60, 0]: 3 in the last minute, 3 in this one
    ]
    pm = metrics.per_minute(samples, now, minutes=5)
    assert pm["minutes"] == [60.0 * m for m in range(996, 1001)]
    assert pm["opened"] == [0.0, 30.0, 30.0, 3.0, 3.0]
    assert sum(pm["finalised"]) == pytest.approx(36)
    assert sum(pm["spent"]) == pytest.approx(100)
    # a flushed database (counters going down) adds nothing
    reset = metrics.per_minute([*samples, s(now + 1, 0, 0, 0, 0)], now + 1, minutes=5)
    assert sum(reset["opened"]) == pytest.approx(66)


def test_samples_are_rate_limited_and_capped(r: redis.Redis, keys: Keys) -> None:
    r.hset(keys.stats, mapping={"frames_opened": 5, "frames_finalised": 3})
    assert metrics.record_sample(r, keys, now=1000.0) is not None
    assert metrics.record_sample(r, keys, now=1002.0) is None  # younger than SAMPLE_SECONDS
    r.hincrby(keys.stats, "frames_opened", 7)
    got = metrics.record_sample(r, keys, now=1000.0 + metrics.SAMPLE_SECONDS)
    assert got is not None and got.opened == 12 and got.finalised == 3
    metrics.record_sample(r, keys, now=1000.0 + metrics.KEEP_SECONDS + 3)
    assert [s.t for s in metrics.read_samples(r, keys, 0)] == [
        1000.0 + metrics.SAMPLE_SECONDS,
        1000.0 + metrics.KEEP_SECONDS + 3,
    ]


def test_in_the_label_server_a_persons_login_opens_nothing_here(
    rb: redis.Redis, keys: Keys, pipeline: list[str]
) -> None:
    """The real app: a person logged in by their invite link gets no page, no figures and no
    thumbnail here; the admin logs in beside them."""
    from gtx_stream.server.app import build_app

    app = build_app(ServerState(rb, keys, settings_with(PASSWORD)))
    person = TestClient(app, follow_redirects=False)
    token = people.create_invite(rb, keys, "alice", ttl=600)
    assert person.get(f"/login/{token}").status_code in (200, 303)
    assert person.cookies, "the invite link started no session"
    assert person.get("/api/progress").status_code == 200  # logged in as a person
    entry_id = rb.xrange(keys.final)[0][0].decode()
    assert person.get("/admin/").status_code == 303
    assert person.get("/admin/api/dashboard").status_code == 401
    assert person.get(f"/admin/thumbnail/{entry_id}").status_code == 401
    admin = TestClient(app, follow_redirects=False)
    assert login(admin).status_code == 303
    assert admin.get("/admin/api/dashboard").status_code == 200
    assert admin.get(f"/admin/thumbnail/{entry_id}").status_code == 200
