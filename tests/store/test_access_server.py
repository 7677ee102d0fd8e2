"""Access for the label server and for applications (docs/access.md's gtx-label-server and
gtx-client users), against a redis-server started with that page's ACL file.

Each flow runs as its user while the aggregator runs as gtx-aggregator, and ends with an empty
``ACL LOG``: nothing was refused. Then what the user must not do is refused (NOPERM) and
changes nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import redis
from pydantic import SecretStr

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from gtx_stream.cli import main  # noqa: E402
from gtx_stream.client import Client, UnknownFrame  # noqa: E402
from gtx_stream.config import LabelerSettings, Settings  # noqa: E402
from gtx_stream.pipeline.aggregate.aggregator import Aggregator  # noqa: E402
from gtx_stream.server.app import build_app  # noqa: E402
from gtx_stream.server.state import ServerState  # noqa: E402
from gtx_stream.store import gold, people  # noqa: E402
from gtx_stream.store.scripts import script_source  # noqa: E402
from tests.aggregator_harness import Capture, answer, register  # noqa: E402
from tests.server.conftest import MACHINES, PersonClient, SplitEnqueue, make_settings  # noqa: E402
from tests.store.test_access import KEYS, Server, passwords, start_server  # noqa: E402

PASSWORD = "admin password of the test"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path, tls=False)
    yield s
    s.embedded.stop()


def raw_admin(server: Server) -> redis.Redis:
    return redis.Redis(port=server.embedded.port, password=passwords()["default"])


def aggregator(server: Server, enqueue: Any) -> Aggregator:
    agg = Aggregator(server.client("gtx-aggregator"), KEYS, make_settings().aggregator,
                     consumer="a1", enqueue=enqueue)  # fmt: skip
    agg.setup()
    return agg


def open_frames(server: Server, n: int) -> list[str]:
    """Frames opened as an application opens them, with the client's user."""
    settings = Settings(redis={"url": server.url("gtx-client")})  # type: ignore[arg-type]
    with Client(settings) as app:
        image = np.full((24, 32, 3), 90, np.uint8)
        return [app.submit(image, source="cam", truth=i % 2) for i in range(n)]


# --- the label server -----------------------------------------------------------------------


def label_server_settings(server: Server) -> Settings:
    base = make_settings(people=["alice"], kappa=3)
    base.gold.qualification = 2
    base.gold.rate = 0.0
    ls = base.label_server.model_copy(update={"admin_password": SecretStr(PASSWORD)})
    url = SecretStr(server.url("gtx-label-server"))
    redis_settings = base.redis.model_copy(update={"url": url})
    return base.model_copy(update={"label_server": ls, "redis": redis_settings})


def admin_login(http: TestClient, password: str) -> Any:
    form = http.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    return http.post("/admin/login", data={"csrf": csrf.group(1), "password": password},
                     follow_redirects=False)  # fmt: skip


@pytest.mark.redis
def test_label_server_runs_with_its_acl_user(server: Server, tmp_path: Path) -> None:
    admin = raw_admin(server)
    settings = label_server_settings(server)
    enqueue = SplitEnqueue(["alice"])
    agg = aggregator(server, enqueue)
    register(admin, KEYS, MACHINES)  # machines live; alice qualifies by gold
    gold.load(
        admin,
        KEYS,
        [gold.GoldImage(f"g{i}", f"g{i}.jpg", f"gold-{i}".encode(), i % 2) for i in range(3)],
    )  # fmt: skip (gold load is the administrator's)
    token = people.create_invite(admin, KEYS, "alice", 600)  # labelers invite: the same
    admin.acl_log_reset()

    state = ServerState(server.client("gtx-label-server"), KEYS, settings)
    app = build_app(state)
    alice = PersonClient(TestClient(app, base_url="http://testserver"), "alice", token)
    alice.login()
    alice.beat()
    phone = PersonClient(TestClient(app, base_url="http://testserver"), "alice",
                         people.create_invite(admin, KEYS, "alice", 600))  # fmt: skip
    phone.login()  # a second session of hers: the list of her sessions
    for _ in range(2):  # gold only, until she qualifies
        found = alice.next()
        assert found is not None
        image = alice.http.get(found["image"]).content
        assert image.startswith(b"gold-")
        assert alice.answer(found["token"], int(image[-1:]) % 2).status_code == 200
    assert admin.hexists(KEYS.labelers, "alice")  # gold_answer.lua registered her

    frames = open_frames(server, 4)
    skipped = answered = 0
    for _ in range(200):
        agg.step(block_ms=1)
        answer(admin, KEYS, enqueue.machines, MACHINES)
        alice.beat()
        found = alice.next()
        if found is not None:
            assert alice.http.get(found["image"]).status_code == 200
            if skipped == 0:
                assert alice.skip(found["token"]).status_code == 200
                skipped += 1
            else:
                assert alice.answer(found["token"], 1).status_code == 200
                answered += 1
        assert alice.http.get("/api/progress").status_code == 200
        if admin.xlen(KEYS.final) == len(frames):
            break
    assert admin.xlen(KEYS.final) == len(frames) and skipped == 1 and answered >= 1

    with TestClient(app, base_url="http://testserver") as http:  # the dashboard
        assert admin_login(http, "wrong").status_code == 401
        assert admin_login(http, PASSWORD).status_code == 303
        page = http.get("/admin/")
        assert page.status_code == 200
        for _ in range(2):
            assert http.get("/admin/api/dashboard").status_code == 200
        entry_id = cast(Any, admin.xrevrange(KEYS.final, count=1))[0][0].decode()
        assert http.get(f"/admin/thumbnail/{entry_id}").status_code == 200
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
        assert csrf is not None
        out = http.post("/admin/logout", data={"csrf": csrf.group(1)}, follow_redirects=False)
        assert out.status_code == 303
    assert alice.post("/logout").status_code == 204  # the phone's session is still live
    assert alice.http.get("/api/next").status_code == 401
    assert phone.http.get("/api/next").status_code in (200, 204)
    assert phone.post("/logout").status_code == 204  # her last: the hand goes
    assert not admin.exists(people.PeopleKeys(KEYS).sessions("alice"))
    phone.http.close()

    # a person paused by their gold answers (gold_answer.lua: pause, unregister, not live)
    strict = settings.model_copy(deep=True)
    strict.gold.floor = 0.999
    strict.labelers.append(LabelerSettings(id="bob", backend="human"))
    bob_state = ServerState(server.client("gtx-label-server"), KEYS, strict)
    bob = PersonClient(TestClient(build_app(bob_state), base_url="http://testserver"), "bob",
                       people.create_invite(admin, KEYS, "bob", 600))  # fmt: skip
    bob.login()
    bob.beat()
    for _ in range(2):
        found = bob.next()
        assert found is not None
        image = bob.http.get(found["image"]).content
        assert bob.answer(found["token"], 1 - int(image[-1:]) % 2).status_code == 200
    assert admin.hexists(KEYS.paused, "bob") and not admin.hexists(KEYS.labelers, "bob")
    assert bob.post("/api/heartbeat").json() == {"live": False, "paused": True}
    assert admin.zscore(KEYS.live, "bob") is None
    with TestClient(build_app(bob_state), base_url="http://testserver") as http:
        # /admin shows the paused person's gold record: read with HGET, since this user may
        # not HMGET the scores (it was HMGET: a 503 as soon as someone was paused)
        assert admin_login(http, PASSWORD).status_code == 303
        rows = http.get("/admin/api/dashboard").json()["figures"]["labelers"]
        assert next(r for r in rows if r["id"] == "bob")["source"] == "gold"
    book = gold.GoldBook(bob_state.client, KEYS, strict.gold)
    statuses = [book.answer("bob", f"g{i}", 1).status for i in range(3)]
    assert statuses.count("duplicate") == 2  # the two he answered
    bob.http.close()
    config = tmp_path / "label-server.toml"
    config.write_text(f'[redis]\nurl = "{server.url("gtx-label-server")}"\n')
    assert main(["status", "--check", "--config", str(config)]) == 0  # its health check
    alice.http.close()

    assert admin.acl_log() == []  # nothing was refused


def _frame_keys(frame_id: str) -> list[str]:
    """finalise.lua's keys for one frame."""
    return [KEYS.open_frames, KEYS.final, KEYS.stats, KEYS.frame(frame_id), KEYS.image(frame_id),
            KEYS.frame_labels(frame_id), KEYS.frame_requests(frame_id)]  # fmt: skip


LABEL_SERVER_REFUSED: list[list[Any]] = [
    ["XADD", KEYS.final, "*", "frame_id", "f", "label", "1"],
    ["XDEL", KEYS.final, "0-1"],
    ["HSET", KEYS.budget, "limit", "1000000"],
    ["HINCRBY", KEYS.budget, "spent", "-5"],
    ["HGETALL", KEYS.gold],
    ["HVALS", KEYS.gold],
    ["HSET", KEYS.gold, "g0", "1"],
    ["XRANGE", KEYS.labels, "-", "+"],
    ["XTRIM", KEYS.labels, "MAXLEN", "0"],
    ["DEL", KEYS.labels],
    ["HSET", KEYS.frame("f"), "state", "final"],
    ["SET", KEYS.image("f"), "x"],
    ["RPUSH", "rq:queue:gtx.labeler.alice", "gtx-forged"],
    ["HSET", KEYS.stats, "frames_finalised", "0"],
    ["DEL", KEYS.paused],
    ["EVALSHA", "FINALISE", 7, *_frame_keys("f"), 0, 0, "f", 0],
]
CLIENT_REFUSED: list[list[Any]] = [
    ["XADD", KEYS.labels, "*", "frame_id", "f", "labeler", "m1", "label", "1"],
    ["XADD", KEYS.final, "*", "frame_id", "f"],
    ["XDEL", KEYS.final, "0-1"],
    ["HSET", KEYS.budget, "limit", "1000000"],
    ["HSET", KEYS.labelers, "m1", '{"accuracy": 1.0}'],
    ["XADD", KEYS.dead, "*", "kind", "frame"],
    ["HGETALL", KEYS.gold],
    ["GET", KEYS.image("f")],
    ["EVALSHA", "FINALISE", 7, *_frame_keys("f"), 0, 0, "f", 0],
]
REFUSED = [("gtx-label-server", c) for c in LABEL_SERVER_REFUSED] + [
    ("gtx-client", c) for c in CLIENT_REFUSED
]


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("acl-server"), tls=False)
    admin = s.admin()
    admin.hset(KEYS.gold, "g0", "1")
    admin.xadd(KEYS.final, {"frame_id": "f"}, id="0-1")
    admin.xadd(KEYS.labels, {"frame_id": "f"})
    admin.hset(KEYS.paused, "bob", "{}")
    yield s
    s.embedded.stop()


@pytest.mark.redis
@pytest.mark.parametrize(("user", "command"), REFUSED, ids=[f"{u}-{c[0]}" for u, c in REFUSED])
def test_what_the_label_server_and_the_client_must_not_do(
    shared_server: Server, user: str, command: list[Any]
) -> None:
    admin = shared_server.admin()
    sha = admin.script_load(script_source("finalise"))
    args = [sha if a == "FINALISE" else a for a in command]
    before = {k: (admin.type(k), admin.dump(k)) for k in admin.keys("*")}
    with pytest.raises(redis.exceptions.NoPermissionError):
        shared_server.client(user).execute_command(*args)
    assert {k: (admin.type(k), admin.dump(k)) for k in admin.keys("*")} == before


# --- an application (gtx_stream.client) -----------------------------------------------------


@pytest.mark.redis
def test_client_runs_with_its_acl_user(server: Server) -> None:
    admin = raw_admin(server)
    capture = Capture()
    agg = aggregator(server, capture)
    register(admin, KEYS, MACHINES)
    admin.acl_log_reset()

    settings = Settings(
        redis={"url": server.url("gtx-client")},  # type: ignore[arg-type]
        labelers=[LabelerSettings(id=m, accuracy=a) for m, a in MACHINES.items()],
    )
    with Client(settings) as app:
        image = np.full((24, 32, 3), 120, np.uint8)
        frames = [app.submit(image, source="cam", metadata={"line": "3"}, truth=i % 2)
                  for i in range(4)]  # fmt: skip
        assert app.metadata(frames[0]) == {"line": "3"}
        with ThreadPoolExecutor(1) as pool:  # a waiter blocked on the final stream (XREAD)
            waiting = pool.submit(app.wait, frames[-1], 30)
            time.sleep(0.3)  # blocked in XREAD by now
            for _ in range(200):
                agg.step(block_ms=1)
                answer(admin, KEYS, capture, MACHINES)
                if admin.xlen(KEYS.final) == len(frames):
                    break
            assert waiting.result(timeout=30).frame_id == frames[-1]
        assert [app.wait(f, timeout=5).frame_id for f in frames] == frames
        with pytest.raises(UnknownFrame):
            app.wait("cam-999", timeout=1)  # reads gtx:dead too
        seen = [r.frame_id for r in app.final_labels("app", "c1", idle_seconds=0.3)]
        assert sorted(seen) == sorted(frames)
        again = list(app.final_labels("app", "c1", idle_seconds=0.2))
        assert again == []  # acknowledged
    assert admin.acl_log() == []  # nothing was refused
