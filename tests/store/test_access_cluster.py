"""The ACL users of docs/access.md, "On a Redis Cluster", on a real cluster: 3 masters and 3
replicas on loopback, every node started with exactly that file (read from the page). Each
service does its work as its own user, in this process: the aggregator (sharded, with a budget
and sources' shares, so it leases from the pool and gives back), the ingester (also taking back
other shards' labels when its lease comes short), a labeler (heartbeats and labels), an
application's client (submit, wait, final labels, the same take-back), the label server (a
person qualifies on gold; the admin opens the dashboard), the estimator, the exporter, status
and a consumer of the final streams. No node's ACL log may hold a refusal at the end; and a
labeler's user cannot write a final stream nor the registry.
Then the same for the services as processes (aggregator, labeler worker, ingester, export,
status), each with its user's URL.
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis

from gtx_stream.config import AggregatorSettings, EstimatorSettings, ExportSettings, Settings
from gtx_stream.core.records import LabelEntry
from gtx_stream.ops.status import pipeline_status
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.pipeline.estimate import Estimator
from gtx_stream.pipeline.export.exporter import Exporter
from gtx_stream.pipeline.ingest.images import encode_jpeg
from gtx_stream.pipeline.ingest.ingester import open_frame
from gtx_stream.store import gold, params
from gtx_stream.store.budget_lease import GIVE_BACK_SECONDS, ShardBudget, budget_held, reclaim
from gtx_stream.store.cluster import cluster_client
from gtx_stream.store.keys import Keys
from gtx_stream.store.people import PeopleKeys, create_invite
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import Capture
from tests.cluster_fixtures import LocalCluster, cluster_unavailable

ACCESS = Path(__file__).resolve().parents[2] / "docs" / "access.md"
SHARDS = 4
MACHINES = {"ann": 0.9, "bob": 0.8}


def cluster_acl() -> str:
    section = ACCESS.read_text().split("## On a Redis Cluster", 1)[1]
    found = re.search(r"```text\n(user default .*?)```", section, re.S)
    assert found, "docs/access.md has no ACL block for a Redis Cluster"
    return found.group(1)


@pytest.fixture
def acl_cluster() -> Any:
    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    acl = cluster_acl()
    passwords = dict(re.findall(r"^user (\S+) on >(\S+) ", acl, re.M))
    with LocalCluster(acl=acl, password=passwords["default"]) as cluster:
        yield cluster, passwords


def _refusals(cluster: LocalCluster) -> list[tuple[str, str, str]]:
    out = []
    for port in cluster.alive():
        with cluster.node(port) as node:
            out += [(e["username"], e["reason"], e["object"]) for e in node.acl_log()]
    return out


@pytest.mark.redis
@pytest.mark.timeout(180)
def test_every_service_does_its_work_as_its_user_on_a_cluster(
    acl_cluster: tuple[LocalCluster, dict[str, str]], redis_url: str, tmp_path: Path
) -> None:
    from starlette.testclient import TestClient

    from gtx_stream.client import Client
    from gtx_stream.server.app import build_app
    from gtx_stream.server.state import ServerState
    from tests.server.conftest import PersonClient

    cluster, passwords = acl_cluster
    port = cluster.masters()[0][0]

    def user(name: str) -> Any:
        return cluster_client(f"redis://{name}:{passwords[name]}@127.0.0.1:{port}")

    admin = cluster.client()
    for p in cluster.alive():
        with cluster.node(p) as node:
            node.acl_log_reset()
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    settings = AggregatorSettings(shards=SHARDS, kappa=3, tau=0.95, budget=200,
                                  budget_per_source=60, shard_lease_seconds=1.0)  # fmt: skip
    # the aggregator: owns the shards, registers the machines, leases the budget
    agg_client = user("gtx-aggregator")
    cap = Capture()
    agg = ShardedAggregator(agg_client, Keys("gtx"), settings, consumer="agg-a", enqueue=cap)
    agg.setup(settings.budget)
    params.store(agg_client, keys, {lab: params.LabelerAccuracy.given(a, "config")
                                    for lab, a in MACHINES.items()})  # fmt: skip
    agg.step()
    assert sorted(agg.owned) == list(range(SHARDS))
    # the ingester opens frames of two sources into every shard (leasing as it goes)
    ingester = user("gtx-ingester")
    jpeg = encode_jpeg(np.full((16, 16, 3), 120, np.uint8), 80)
    fids = []
    for i in range(16):
        source = f"cam-{i % 2}"
        code = open_frame(ingester, keys, source=source, source_id=source, frame_index=i // 2,
                          jpeg=jpeg, ttl=600, max_open_frames=100, reserve_per_frame=3,
                          fields={"truth": "1"}, source_share=60)  # fmt: skip
        assert code == "opened", code
        fids.append(f"{source}-{i // 2}")
    assert {keys.of_frame(f).shard for f in fids} == set(range(SHARDS))
    # an application's client submits a frame of its own
    app_settings = Settings(
        redis={"url": f"redis://gtx-client:{passwords['gtx-client']}@127.0.0.1:{port}",
               "cluster": True, "queue_url": redis_url},  # type: ignore[arg-type]
        aggregator=settings,
    )  # fmt: skip
    app_client = Client(app_settings)
    fids.append(app_client.submit(np.full((16, 16, 3), 60, np.uint8), source="app", truth=0))
    # the labeler: heartbeats into the registry's slot, answers on each frame's shard
    labeler = user("gtx-labeler")
    deadline = time.monotonic() + 60
    while sum(admin.zcard(s.open_frames) for s in keys.every_shard()):
        assert time.monotonic() < deadline, "frames still open"
        labeler.zadd(keys.live, dict.fromkeys(MACHINES, time.time()))
        agg.step()
        for req in cap.pending:
            entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, 1)
            labeler.xadd(keys.of_frame(req.frame_id).labels, entry.to_fields())  # type: ignore[arg-type]
        cap.pending.clear()
    # what the shards hold comes back to the pool: the aggregator's give-back once no frame is
    # open, and the reclaim of an ingester's or an application's lease that came short
    time.sleep(GIVE_BACK_SECONDS)
    agg.step()
    assert sum(int(admin.hget(s.budget, "returned") or 0) for s in keys.every_shard()) > 0
    for who in (ingester, app_client.redis):
        runner = ScriptRunner(who)
        lender = ShardBudget(who, keys.for_shard(1), runner, chunk=10, share=60)
        assert lender.lease(10) > 0 and lender.lease_source("cam-0", 5) > 0
        assert reclaim(runner, keys.for_shard(0), 3, "") >= 10
        assert reclaim(runner, keys.for_shard(0), 3, "cam-0") >= 5
        assert budget_held(who, keys, "cam-0", 60)
    assert _refusals(cluster) == []  # before the log is reset below
    # a labeler's user may not finalise nor change the registry
    for forbidden in (lambda: labeler.xadd(keys.for_shard(0).final, {"x": "1"}),
                      lambda: labeler.hset(keys.labelers, "ann", "{}")):  # fmt: skip
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    for p in cluster.alive():  # those two refusals are expected: start the log afresh
        with cluster.node(p) as node:
            node.acl_log_reset()
    # the label server: a person qualifies on gold; the admin opens the dashboard
    gold.load(admin, keys, [gold.GoldImage(f"g{i}", f"g{i}.png", jpeg, 1) for i in range(2)])
    server_settings = Settings(
        redis={"url": "redis://x", "cluster": True, "queue_url": redis_url},  # type: ignore[arg-type]
        aggregator=settings,
        gold={"qualification": 2, "rate": 0.0},  # type: ignore[arg-type]
        label_server={"admin_password": "a-long-admin-password"},  # type: ignore[arg-type]
        labelers=[{"id": "cat", "backend": "human"}],  # type: ignore[list-item]
    )
    pages = user("gtx-label-server")
    app = build_app(ServerState(pages, Keys("gtx"), server_settings,
                                queue=redis.Redis.from_url(redis_url)))  # fmt: skip
    with TestClient(app, base_url="http://testserver") as http:
        cat = PersonClient(http, "cat", create_invite(admin, keys, "cat", 600))
        cat.login()
        phone = PersonClient(TestClient(app, base_url="http://testserver"), "cat",
                             create_invite(admin, keys, "cat", 600))  # fmt: skip
        phone.login()  # a second session: the list of cat's sessions, in a slot of its own
        for _ in range(2):
            found = cat.next()
            assert found is not None
            answered = cat.answer(found["token"], 1).json()
            assert answered == {"status": "sent"}, (answered, _refusals(cluster))
        form = http.get("/admin/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None
        http.post("/admin/login", data={"csrf": csrf.group(1), "password": "a-long-admin-password"})
        dashboard = http.get("/admin/api/dashboard").json()["figures"]
        assert cat.post("/logout").status_code == 204  # the phone's session is still live
        assert phone.http.get("/api/next").status_code in (200, 204)
        assert phone.post("/logout").status_code == 204  # the last one
        phone.http.close()
    assert not admin.exists(PeopleKeys(keys).sessions("cat"))
    assert admin.hexists(keys.labelers, "cat")
    # the estimator fits over every shard's final stream; the exporter writes the dataset
    est = Estimator(user("gtx-estimator"), Keys("gtx"), EstimatorSettings(min_labels=1),
                    settings)  # fmt: skip
    assert est.fit_once() is not None
    exporter = Exporter(user("gtx-exporter"), Keys("gtx"), ExportSettings(), tmp_path / "out")
    exporter.setup()
    report = exporter.run(threading.Event(), follow=False)
    exporter.close()
    assert app_client.wait(fids[-1], timeout=10).frame_id == fids[-1]
    read = [rec.frame_id for rec in app_client.final_labels("app", "c1", idle_seconds=1)]
    app_client.close()
    status = pipeline_status(user("gtx-reader"), Keys("gtx"), qualification=2)
    consumer = user("gtx-consumer")
    finals = sum(len(consumer.xrange(s.final)) for s in keys.every_shard())
    refused = _refusals(cluster)
    assert refused == []
    assert finals == len(fids) == status["frames_finalised"] == dashboard["frames"]["finalised"]
    assert report.exported == len(fids) and sorted(read) == sorted(fids)
    assert status["people"]["cat"]["qualified"]


@pytest.mark.redis
@pytest.mark.timeout(240)
def test_the_services_run_as_processes_under_their_users_on_a_cluster(
    acl_cluster: tuple[LocalCluster, dict[str, str]], redis_url: str, tmp_path: Path
) -> None:
    """The aggregator, a labeler worker (RQ, its heartbeat thread), the ingester on a video,
    an export and status, each a process whose ``GTX_REDIS__URL`` names its own user."""
    import json
    import subprocess
    import sys

    from gtx_stream.ops.supervisor import Supervisor
    from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
    from tests.cluster_fixtures import cluster_config

    cluster, passwords = acl_cluster
    port = cluster.masters()[0][0]

    def env(name: str) -> dict[str, str]:
        return {"GTX_REDIS__URL": f"redis://{name}:{passwords[name]}@127.0.0.1:{port}"}

    config = cluster_config(
        tmp_path / "pipeline.toml", "redis://unused:1", redis_url, MACHINES, 4,
        aggregator={"shards": SHARDS, "kappa": 3, "budget": 400},
    )  # fmt: skip
    video = tmp_path / "line.avi"
    write_truth_csv(tmp_path / "truth.csv", write_synthetic_video(video, 40, seed=2))
    admin = cluster.client(decode_responses=True)
    keys = Keys("gtx", shards=SHARDS, cluster=True)
    sups = [Supervisor(config=config, log_dir=tmp_path / "logs", env=env(name))
            for name in ("gtx-aggregator", "gtx-labeler", "gtx-ingester")]  # fmt: skip

    def logs() -> str:
        return "\n".join(p.read_text()[-1500:] for p in (tmp_path / "logs").glob("*.log"))

    def wait(what: str, done: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"{what}\n{logs()}\n{_refusals(cluster)}"
            time.sleep(0.1)

    try:
        sups[0].start("agg", "aggregator")  # first: it registers the configured accuracies
        wait("registered", lambda: admin.hlen(keys.labelers) == len(MACHINES))
        sups[1].start("labelers", "labeler", *[x for lab in MACHINES for x in ("--id", lab)])
        wait("labelers live", lambda: set(MACHINES) <= set(admin.zrange(keys.live, 0, -1)))
        sups[2].start("ingest", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        wait("every frame final",
             lambda: sum(admin.xlen(s.final) for s in keys.every_shard()) == 40, 120)  # fmt: skip

        def cli(name: str, *command: str) -> str:
            done = subprocess.run(
                [sys.executable, "-m", "gtx_stream", *command, "--config", str(config)],
                capture_output=True, text=True, timeout=60, env={**os.environ, **env(name)},
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        cli("gtx-exporter", "export", "--out", str(tmp_path / "dataset"))
        status = json.loads(cli("gtx-reader", "status", "--json"))
    finally:
        for sup in sups:
            sup.stop_all(timeout=10)
        admin.close()
    assert _refusals(cluster) == []
    assert status["frames_finalised"] == 40 and status["frames_open"] == 0
    assert status["exporter"]["lag"] == 0
    assert len((tmp_path / "dataset" / "manifest.jsonl").read_text().splitlines()) == 40
