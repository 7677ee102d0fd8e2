"""People on a real Redis Cluster (3 masters, 3 replicas on loopback): the label server, gold
and the dashboard with the state on the cluster and the label requests on a standalone Redis.

The aggregator and the machine labelers run as processes with the cluster's config; the label
server is the app ``gtx-stream label-server`` serves, built from the same config. A person
qualifies on gold loaded with ``gtx-stream gold load``, is registered (in the registry's slot
and in every shard's copy that ``apply_labels.lua`` checks), and their answers reach the frames
of every shard through the hand of each frame's shard; another person, wrong on every gold
frame, is paused and taken out of every shard's copy. ``status`` (per source and the exporter's
group too) and the /admin dashboard sum the shards.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from starlette.testclient import TestClient

from gtx_stream.ops.demo import write_config
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.store.connection import connect
from gtx_stream.store.keys import Keys
from gtx_stream.store.people import PeopleKeys, create_invite, hand
from tests import cluster_fixtures
from tests.cluster_fixtures import LocalCluster, run_cli, start_pipeline
from tests.server.conftest import PersonClient

local_cluster = cluster_fixtures.local_cluster  # the fixture

SHARDS = 4
MACHINES = {"m1": 0.8, "m2": 0.75}
PASSWORD = "a-long-admin-password"


def _gold_folder(tmp: Path, n: int) -> tuple[Path, Path]:
    folder = tmp / "gold"
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"g{i}.png"), np.full((24, 24, 3), 40 * i + 20, np.uint8))
    truth = tmp / "gold.csv"
    truth.write_text("frame_index,truth\n" + "".join(f"{i},1\n" for i in range(n)))
    return folder, truth


def _admin(http: TestClient) -> dict[str, Any]:
    form = http.get("/admin/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    http.post("/admin/login", data={"csrf": csrf.group(1), "password": PASSWORD})
    assert http.get("/admin/").status_code == 200
    res = http.get("/admin/api/dashboard")
    assert res.status_code == 200, res.text
    figures: dict[str, Any] = res.json()["figures"]
    shown = [t for t in figures["thumbnails"] if t["has_image"]]
    assert shown, figures["thumbnails"]
    image = http.get(f"/admin/thumbnail/{shown[-1]['entry_id']}")  # from some shard's stream
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    return figures


@pytest.mark.redis
@pytest.mark.timeout(240)
def test_people_label_and_qualify_on_gold_with_the_state_on_a_cluster(
    tmp_path: Path, local_cluster: LocalCluster, redis_url: str
) -> None:
    from gtx_stream.client import Client
    from gtx_stream.config import load_settings
    from gtx_stream.server.app import app_from_settings

    config = tmp_path / "pipeline.toml"
    write_config(
        config,
        {
            "redis": {"url": local_cluster.url, "cluster": True, "queue_url": redis_url},
            "aggregator": {"shards": SHARDS, "tau": 0.99, "kappa": 3, "budget": 500},
            "gold": {"qualification": 3, "rate": 0.0, "floor": 0.7},
            "label_server": {"admin_password": PASSWORD, "prefetch": 1},
        },
        [{"id": lab, "backend": "simulated", "accuracy": a, "seed": 2}
         for lab, a in MACHINES.items()]
        + [{"id": "alice", "backend": "human"}, {"id": "bob", "backend": "human"}],
    )  # fmt: skip
    folder, truth = _gold_folder(tmp_path, 3)
    loaded = run_cli(config, "gold", "load", str(folder), "--truth", str(truth))
    assert "3 added" in loaded and "gtx:{registry}:gold" in loaded
    settings = load_settings(config)
    sup = Supervisor(config=config, log_dir=tmp_path / "logs")
    state = connect(settings)
    http = None
    try:
        # the label server starts before any aggregator has stored the shard count: alice
        # takes her first gold frame then, and answers it once the pipeline runs 4 shards
        app = app_from_settings(settings, client=state)
        http = TestClient(app, base_url="http://testserver")
        people = {}
        for person in ("alice", "bob"):
            people[person] = PersonClient(
                TestClient(app, base_url="http://testserver"), person,
                create_invite(state, Keys("gtx"), person, 3600),
            )  # fmt: skip
            people[person].login()
        early = people["alice"].next()
        assert early is not None and state.get("gtx:shards") is None
        with Client(settings) as client:
            start_pipeline(sup, client, MACHINES)
            r, keys = client.redis, client.keys
            assert keys.live == "gtx:{registry}:live" and keys.shards == SHARDS
            # gold first: alice answers 1 (right), bob 0 (wrong) until each has answered 3
            assert people["alice"].answer(early["token"], 1).json() == {"status": "sent"}
            for person, label, left in (("alice", 1, 2), ("bob", 0, 3)):
                for _ in range(left):
                    found = people[person].next()
                    assert found is not None, f"{person}: no gold frame"
                    assert people[person].answer(found["token"], label).json() == {"status": "sent"}
                assert people[person].next() is None  # no gold left, and no request yet
            registered = json.loads(r.hget(keys.labelers, "alice") or "{}")
            assert registered["source"] == "gold" and registered["n"] == 3
            # in every shard's copy within a balance round of the aggregator (a second), also
            # when she qualified before the aggregator stored the shard count
            deadline = time.monotonic() + 10
            while True:
                copies = [r.hexists(s.script_labelers, "alice") for s in keys.every_shard()]
                if copies == [True] * SHARDS or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert copies == [True] * SHARDS
            assert not r.hexists(keys.labelers, "bob") and r.hexists(keys.paused, "bob")
            assert not any(r.hexists(s.script_labelers, "bob") for s in keys.every_shard())
            # frames on every shard; alice is asked for the ones the machines leave unsure
            ids = [client.submit(np.full((24, 24, 3), i, np.uint8), source="cam", truth=1)
                   for i in range(16)]  # fmt: skip
            assert {keys.of_frame(f).shard for f in ids} == set(range(SHARDS))
            hands = PeopleKeys(keys)
            answered, shards_seen = 0, set()
            deadline = time.monotonic() + 90
            while sum(r.zcard(s.open_frames) for s in keys.every_shard()):
                assert time.monotonic() < deadline, "frames still open"
                people["alice"].beat()
                found = people["alice"].next()
                if found is None:
                    time.sleep(0.05)
                    continue
                item = {t: item for t, item, _ in hand(r, keys, "alice")}[found["token"]]
                shard = keys.of_frame(item.frame_id).shard
                assert r.hexists(hands.hand("alice", shard), found["token"])
                assert people["alice"].answer(found["token"], 1).status_code == 200
                answered += 1
                shards_seen.add(shard)
            finals = [rec for rec in client.final_labels("app", "c1", idle_seconds=2)]
            progress = people["alice"].http.get("/api/progress").json()
            dash = _admin(http)
            run_cli(config, "export", "--out", str(tmp_path / "dataset"))
            status = json.loads(run_cli(config, "status", "--json"))
    finally:
        if http is not None:
            http.close()
        sup.stop_all(timeout=10)
        state.close()
    assert sorted(rec.frame_id for rec in finals) == sorted(ids)  # each frame final once
    # two machines at 0.8 and 0.75 never reach tau 0.99: every frame waits for alice's label
    with_alice = [rec for rec in finals if "alice" in rec.labelers]
    assert answered == len(with_alice) == 16, (answered, [rec.labelers for rec in finals])
    assert shards_seen == set(range(SHARDS))
    assert progress["answered_today"] == 3 + answered  # gold answers count, over every hand
    assert status["frames_finalised"] == 16 and status["frames_open"] == 0
    assert status["gold_items"] == 3 and status["gold_answers"] == 6
    assert status["people"]["alice"]["qualified"] and status["people"]["bob"]["paused"]
    # per source and the exporter's group, over every shard's copies and final streams
    assert status["sources"] == [{"source": "cam", "open": 0, "opened": 16, "finalised": 16}]
    assert status["exporter"] == {"group": "exporter", "lag": 0, "pending": 0, "behind_s": 0.0}
    exported = (tmp_path / "dataset" / "manifest.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["frame_id"] for line in exported) == sorted(ids)
    assert dash["frames"]["finalised"] == 16 and dash["frames"]["open"] == 0
    assert dash["sources"] == [{"source": "cam", "open": 0, "opened": 16, "finalised": 16}]
    assert len(dash["thumbnails"]) == 12 and dash["labels_per_frame"]["recent_frames"] == 16
    rows = {row["id"]: row for row in dash["labelers"]}
    assert rows["alice"]["registered"] and rows["bob"]["paused"]
    assert rows["alice"]["labels"] == len(with_alice)
