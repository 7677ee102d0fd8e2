"""Label requests on a Redis of their own (``redis.queue_url``), against two real servers.

RQ does not run on Redis Cluster, so its queues and jobs may live on a standalone Redis while
the state (frames, streams, leases, heartbeats) lives on ``redis.url``. Each test here starts
a second redis-server for the queues: everything RQ goes there, nothing else does, and the
pipeline still finalises every frame once. With ``queue_url`` empty nothing changes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.config import ConfigError, Settings
from gtx_stream.core.records import LabelEntry, LabelRequest, decode_fields
from gtx_stream.ops.demo import write_config
from gtx_stream.ops.embedded import EmbeddedRedis, free_port
from gtx_stream.ops.status import pipeline_status
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.label.batch import queue_key
from gtx_stream.pipeline.label.requests import enqueue_requests
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.connection import connect_both, connect_queue, has_queue_redis
from gtx_stream.store.keys import Keys
from tests.pipeline.test_batch_requests import batches, model, put_frame
from tests.pipeline_fixtures import Pipeline, check_final_records, final_records, pipeline


@pytest.fixture(scope="module")
def queue_server() -> Iterator[str]:
    with EmbeddedRedis() as server:
        yield server.url


@pytest.fixture
def queue_url(queue_server: str) -> Iterator[str]:
    client = redis.Redis.from_url(queue_server)
    assert client.dbsize() == 0, "queue database is not empty"
    yield queue_server
    client.flushdb()
    client.close()


def both(state_url: str, queue_url: str, **more: Any) -> Settings:
    return Settings(redis={"url": state_url, "queue_url": queue_url}, **more)


def keys_of(url: str) -> list[str]:
    client = redis.Redis.from_url(url, decode_responses=True)
    try:
        return sorted(client.scan_iter(count=1000))
    finally:
        client.close()


def assert_split(state_url: str, queue_url: str) -> None:
    """No RQ key on the state Redis; nothing but RQ keys on the queue Redis."""
    on_state, on_queue = keys_of(state_url), keys_of(queue_url)
    assert on_state and on_queue
    assert [k for k in on_state if k.startswith("rq:")] == []
    assert [k for k in on_queue if not k.startswith("rq:")] == []


# --- config --------------------------------------------------------------------------------


def test_an_empty_queue_url_keeps_the_queues_on_the_state_redis() -> None:
    settings = Settings(redis={"url": "redis://127.0.0.1:1/0"})
    assert settings.redis.queue_url.get_secret_value() == ""
    assert not has_queue_redis(settings)
    state, queue = connect_both(settings, check=False)
    assert queue is state  # one client, one pool: exactly as before queue_url existed
    alone = connect_queue(settings, check=False)
    assert alone.connection_pool.connection_kwargs["port"] == 1
    split = both("redis://127.0.0.1:1/0", "redis://127.0.0.1:2/3")
    state, queue = connect_both(split, check=False)
    assert queue is not state
    assert queue.connection_pool.connection_kwargs["port"] == 2
    assert queue.connection_pool.connection_kwargs["db"] == 3
    assert "2/3" not in repr(split.redis)  # a SecretStr, as redis.url


def test_a_bad_queue_url_is_refused_in_one_line_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"^config error: redis\.queue_url: ") as err:
        connect_queue(both("redis://127.0.0.1:1/0", "http://queues.example:6379"), check=False)
    assert "\n" not in str(err.value)


def test_an_unreachable_queue_redis_is_one_line_and_no_password(
    redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queue = f"redis://gtx:s3cret@127.0.0.1:{free_port()}/0"
    settings = both(
        redis_url, queue, labelers=[{"id": "s1", "backend": "simulated", "accuracy": 0.9}]
    )
    with pytest.raises(ConfigError) as err:
        connect_both(settings)
    message = str(err.value)
    assert message.startswith("redis.queue_url redis at redis://gtx:***@127.0.0.1:")
    assert "unreachable" in message and "s3cret" not in message and "\n" not in message
    with pytest.raises(ConfigError, match="redis.queue_url redis at .* is unreachable"):
        run_labeler_worker(settings, ["s1"], burst=True)
    from gtx_stream.server.app import app_from_settings

    with pytest.raises(ConfigError, match="redis.queue_url redis at .* is unreachable"):
        app_from_settings(settings)  # the label server
    config = tmp_path / "c.toml"
    write_config(config, {"redis": {"url": redis_url, "queue_url": queue,
                                    "socket_timeout": 2.0}}, [])  # fmt: skip
    for command in (["aggregator"], ["status"], ["status", "--check"]):
        assert main([*command, "--config", str(config)]) != 0
        out = capsys.readouterr()
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in out.err, out.err
        assert "redis.queue_url" in lines[0] and "unreachable" in lines[0]
        assert "s3cret" not in out.err + out.out


# --- the labeler worker's job path -----------------------------------------------------------


@pytest.mark.redis
def test_a_worker_takes_its_batches_from_the_queue_redis_and_labels_on_the_state(
    redis_url: str, queue_url: str
) -> None:
    state = redis.Redis.from_url(redis_url)
    queue = redis.Redis.from_url(queue_url)
    keys = Keys("gtx")
    reqs = []
    for i in range(6):
        put_frame(state, keys, f"cam-{i}", i)
        reqs.append(LabelRequest("m", f"cam-{i}", f"r{i}", keys.prefix))
    enqueue_requests(queue, keys, reqs, lease_seconds=30)
    assert queue.llen(queue_key(keys, "m")) == 6 and not state.exists(queue_key(keys, "m"))
    batches.clear()
    settings = both(redis_url, queue_url, labelers=[model("parity_batch", batch=4)])
    assert run_labeler_worker(settings, ["m"], burst=True) == 0
    # the first job took the three requests behind it off the queue Redis: two batches
    assert [len(b) for b in batches] == [4, 2]
    arrived = [LabelEntry.from_fields(decode_fields(f)) for _, f in state.xrange(keys.labels)]
    assert sorted(e.request_id for e in arrived) == [f"r{i}" for i in range(6)]
    assert {e.request_id: e.label for e in arrived} == {f"r{i}": i % 2 for i in range(6)}
    assert queue.llen(queue_key(keys, "m")) == 0
    assert_split(redis_url, queue_url)
    state.close()
    queue.close()


@pytest.mark.redis
def test_a_plain_rq_worker_reaches_the_state_through_redis_url(
    tmp_path: Path, redis_url: str, queue_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run by a plain ``rq worker``, the job's own connection is the queue Redis's: the state
    (frames, labels stream) is reached through ``redis.url`` instead."""
    from types import SimpleNamespace

    import gtx_stream.pipeline.label.job as job

    queue = redis.Redis.from_url(queue_url)
    config = tmp_path / "c.toml"
    write_config(config, {"redis": {"url": redis_url, "queue_url": queue_url}}, [])
    monkeypatch.setenv("GTX_CONFIG", str(config))
    monkeypatch.setattr(job, "_context", None)
    monkeypatch.setattr(job, "_fallback", None)
    monkeypatch.setattr(job, "get_current_job", lambda: SimpleNamespace(connection=queue))
    ctx = job._runtime()
    try:
        assert ctx.queue_client is queue
        state_port = redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
        assert ctx.client.connection_pool.connection_kwargs["port"] == state_port
        assert ctx.client.ping()
    finally:
        ctx.client.close()
        queue.close()
    monkeypatch.setattr(job, "_fallback", None)
    write_config(config, {"redis": {"url": redis_url}}, [])  # no queue_url: one connection
    assert job._runtime().client is queue


# --- the whole pipeline, as processes ---------------------------------------------------------

N_FRAMES = 10
TAU, KAPPA = 0.95, 3


@pytest.mark.redis
def test_the_pipeline_finalises_every_frame_once_with_the_queues_apart(
    tmp_path: Path,
    redis_url: str,
    queue_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    video = tmp_path / "line.avi"
    write_truth_csv(tmp_path / "truth.csv", write_synthetic_video(video, N_FRAMES, seed=5))
    labelers = [
        {"id": "s1", "backend": "simulated", "accuracy": 0.9, "seed": 5, "batch": 4},
        {"id": "s2", "backend": "simulated", "accuracy": 0.85, "seed": 5},
        {"id": "s3", "backend": "simulated", "accuracy": 0.8, "seed": 5},
    ]
    agg = {"tau": TAU, "kappa": KAPPA, "seed": 5, "max_open_frames": N_FRAMES}
    with pipeline(tmp_path, redis_url, aggregator=agg, labelers=labelers) as p:
        _with_queue_url(p, queue_url)
        p.start("aggregator", "aggregator")
        p.start("labelers", "labeler", "--id", "s1", "--id", "s2", "--id", "s3")
        p.wait_aggregator_group()
        p.wait_live(["s1", "s2", "s3"])
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        p.wait_until(lambda: p.finished(N_FRAMES), f"{N_FRAMES} frames final", 120)
        records = final_records(p.client, p.keys)
        dead = p.client.xlen(p.keys.dead)
        stats = p.client.hgetall(p.keys.stats)
        queue = redis.Redis.from_url(queue_url)
        status = pipeline_status(p.client, p.keys, queue=queue)
        rq_queues = sorted(q.decode() for q in queue.smembers("rq:queues"))
        queue.close()
        monkeypatch.setenv("GTX_REDIS__QUEUE_URL", queue_url)
        assert main(["status", "--config", str(p.config)]) == 0
        shown = capsys.readouterr().out
    assert sorted(int(f["frame_index"]) for f in records) == list(range(N_FRAMES))
    assert dead == 0
    check_final_records(records, TAU, KAPPA)
    assert int(stats["frames_finalised"]) == N_FRAMES
    assert int(stats["requests"]) >= N_FRAMES  # every label went through the queue Redis
    # RQ named the queues it enqueued on there (empty now: every request was taken)
    assert rq_queues == [queue_key(p.keys, lab) for lab in ("s1", "s2", "s3")]
    assert all(v["queue"] == 0 for v in status["labelers"].values())
    assert f"queue redis      {queue_url}" in shown.splitlines()
    assert_split(redis_url, queue_url)


def _with_queue_url(p: Pipeline, queue_url: str) -> None:
    """Point the pipeline's services at ``queue_url`` for their label requests."""
    p.sup.env["GTX_REDIS__QUEUE_URL"] = queue_url


# --- the label server ----------------------------------------------------------------------


@pytest.mark.redis
def test_the_label_server_hands_people_their_requests_from_the_queue_redis(
    redis_url: str, queue_url: str
) -> None:
    """The aggregator's real RQ enqueue puts people's requests on the queue Redis; the label
    server's feed pops them from there (next), and the answers reach the state (answer)."""
    from gtx_stream.pipeline.aggregate.aggregator import Aggregator
    from gtx_stream.server.app import build_app
    from gtx_stream.server.state import ServerState
    from tests.aggregator_harness import register
    from tests.server.conftest import PEOPLE, Pipeline, SplitEnqueue, make_settings, open_frames

    state = redis.Redis.from_url(redis_url)
    queue = redis.Redis.from_url(queue_url)
    settings = make_settings()
    keys = Keys(settings.redis.prefix)
    agg = Aggregator(state, keys, settings.aggregator, consumer="a1",
                     labeler_leases=settings.labeler_leases(), queue_client=queue)  # fmt: skip
    agg.setup()
    register(state, keys, {p: 0.9 for p in PEOPLE}, live=False)
    app = build_app(ServerState(state, keys, settings, queue=queue))
    p = Pipeline(state, keys, settings, agg, SplitEnqueue(PEOPLE), app)
    people = {name: p.person(name) for name in PEOPLE}
    try:
        for person in people.values():
            person.login()
            person.beat()
        frames = open_frames(p, 4)
        p.step(2, machines=False)
        waiting = {n: queue.llen(queue_key(keys, n)) for n in PEOPLE}
        assert sum(waiting.values()) >= 4 and not state.exists(queue_key(keys, "alice"))
        assert people["alice"].http.get("/api/progress").json()["waiting"] == waiting["alice"]
        labels = {"alice": 1, "bob": 0}
        for _ in range(200):
            p.step(machines=False)
            for name, person in people.items():
                person.beat()
                found = person.next()
                if found is not None:
                    assert person.answer(found["token"], labels[name]).status_code == 200
            if not state.zcard(keys.open_frames):
                break
        final = p.final()
    finally:
        for client in p.clients:
            client.close()
    assert set(final) == set(frames)
    for rec in final.values():
        assert set(json.loads(rec["labelers"])) <= set(PEOPLE)
    assert_split(redis_url, queue_url)
    state.close()
    queue.close()


# --- the ACL users of the queue Redis (docs/access.md) ---------------------------------------

ACCESS = Path(__file__).resolve().parents[2] / "docs" / "access.md"


def queue_acl() -> str:
    """The queue Redis's ACL file shown in docs/access.md."""
    section = ACCESS.read_text().split("## A queue Redis of its own", 1)[1]
    found = re.search(r"```text\n(user default .*?)```", section, re.S)
    assert found, "docs/access.md has no ACL block for the queue Redis"
    return found.group(1)


@pytest.mark.redis
def test_the_queue_redis_users_of_docs_access_do_their_work(tmp_path: Path, redis_url: str) -> None:
    """The aggregator, a labeler worker with a batch, the label server and status, each with
    its user of docs/access.md on the queue Redis: every frame is finalised and nothing is
    refused (the state Redis has no ACL users here: test_access.py covers it)."""
    from starlette.testclient import TestClient

    from gtx_stream.pipeline.aggregate.aggregator import Aggregator
    from gtx_stream.server.app import build_app
    from gtx_stream.server.state import ServerState
    from gtx_stream.store.people import create_invite
    from tests.aggregator_harness import open_frame, register
    from tests.server.conftest import PersonClient

    acl = queue_acl()
    (tmp_path / "queue.acl").write_text(acl)
    passwords = dict(re.findall(r"^user (\S+) on >(\S+) ", acl, re.M))
    server = EmbeddedRedis(data_dir=tmp_path, extra_args=["--aclfile", str(tmp_path / "queue.acl")])
    server.start()

    def url(user: str) -> str:
        return f"redis://{user}:{passwords[user]}@127.0.0.1:{server.port}/0"

    machines = {"s1": 0.9, "s2": 0.85, "s3": 0.8}
    labelers: list[dict[str, Any]] = [
        {
            "id": lab,
            "backend": "simulated",
            "accuracy": a,
            "seed": 4,
            "batch": 4 if lab == "s1" else 1,
        }
        for lab, a in machines.items()
    ]
    labelers.append({"id": "alice", "backend": "human", "accuracy": 0.95})
    agg_settings = both(redis_url, url("gtx-aggregator"), labelers=labelers,
                        aggregator={"tau": 0.95, "kappa": 3, "sweep_seconds": 0.05})  # fmt: skip
    worker_settings = both(redis_url, url("gtx-labeler"), labelers=labelers)
    keys = Keys("gtx")
    admin = redis.Redis(port=server.port, password=passwords["default"])
    state, queue = connect_both(agg_settings)
    http = None
    try:
        admin.acl_log_reset()
        leases = agg_settings.labeler_leases()
        agg = Aggregator(
            state, keys, agg_settings.aggregator, "a1", labeler_leases=leases, queue_client=queue
        )
        agg.setup()
        frames = [open_frame(state, keys, i, truth=i % 2) for i in range(6)]
        pages = redis.Redis.from_url(url("gtx-label-server"))
        app = build_app(ServerState(state, keys, agg_settings, queue=pages))
        http = TestClient(app, base_url="http://testserver")
        alice = PersonClient(http, "alice", create_invite(state, keys, "alice", 3600))
        alice.login()
        answered = 0
        for _ in range(100):
            register(state, keys, {**machines, "alice": 0.95})  # a burst worker leaves live
            alice.beat()
            agg.step(block_ms=1)
            found = alice.next()
            if found is not None:
                assert alice.answer(found["token"], 1).status_code == 200
                answered += 1
            assert run_labeler_worker(worker_settings, list(machines), burst=True) == 0
            if not state.zcard(keys.open_frames):
                break
        reader = redis.Redis.from_url(url("gtx-reader"))
        status = pipeline_status(state, keys, queue=reader)
        refused = admin.acl_log()
    finally:
        if http is not None:
            http.close()
        state.close()
        queue.close()
        admin.close()
        server.stop()
    assert [(e["username"], e["object"]) for e in refused] == []
    assert answered >= 1
    assert set(status["labelers"]) == {*machines, "alice"}
    assert status["frames_finalised"] == len(frames) and status["frames_open"] == 0
