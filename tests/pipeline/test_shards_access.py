"""A sharded pipeline under the ACL users of docs/access.md: each service reaches its shard keys.

The server is the one of tests/store/test_access.py (its own redis-server with the documented
ACL file); each step runs as the user of the service that does it, and Redis's ACL log must stay
empty.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.records import FinalRecord, LabelEntry
from gtx_stream.ops.status import pipeline_status
from gtx_stream.pipeline.aggregate.shards import ShardedAggregator
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from gtx_stream.store.shards import configured_keys, stored_keys
from tests.aggregator_harness import Capture
from tests.store.test_access import Server, start_server

SHARDS = 3


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = start_server(tmp_path, tls=False)
    yield s
    s.embedded.stop()


@pytest.mark.redis
def test_each_service_reaches_its_shard_keys_under_its_acl_user(server: Server) -> None:
    admin = server.admin()
    admin.acl_log_reset()
    admin.hset("gtx:labelers", "ann", json.dumps({"accuracy": 0.9, "source": "test"}))
    admin.zadd("gtx:live", {"ann": time.time() + 3600})
    settings = AggregatorSettings(shards=SHARDS, shard_lease_seconds=1.0)
    cap = Capture()
    agg = ShardedAggregator(server.client("gtx-aggregator"), Keys("gtx"), settings,
                            consumer="agg-a", enqueue=cap)  # fmt: skip
    agg.setup()
    agg.step()
    assert sorted(agg.owned) == list(range(SHARDS))
    # the ingester checks the count and opens frames into their shards
    ingester = server.client("gtx-ingester")
    keys = configured_keys(ingester, Keys("gtx"), SHARDS)
    fids = [f"cam-{i}" for i in range(12)]
    calls = [
        frame_scripts.open_frame(
            keys, frame_id=fid, frame_index=i, source="cam", source_id="cam",
            opened_at=time.time(), ttl=600, max_open_frames=100, reserve_per_frame=0,
            jpeg=b"jpeg", fields={"truth": "1"},
        )
        for i, fid in enumerate(fids)
    ]  # fmt: skip
    assert ScriptRunner(ingester).run(calls) == ["opened"] * len(fids)
    assert {keys.of_frame(f).shard for f in fids} == set(range(SHARDS))
    # the aggregator asks; the labeler worker's user reads the count and answers on the shard
    for _ in range(3):
        agg.step()
    assert len(cap.pending) == len(fids)
    labeler = server.client("gtx-labeler")
    sharded = stored_keys(labeler, Keys("gtx"))
    assert sharded.shards == SHARDS
    for req in cap.pending:
        entry = LabelEntry(req.frame_id, req.labeler_id, req.request_id, 1)
        labeler.xadd(sharded.of_frame(req.frame_id).labels, entry.to_fields())  # type: ignore[arg-type]
    cap.pending.clear()
    deadline = time.monotonic() + 10
    while admin.zcard("gtx:open") and time.monotonic() < deadline:
        agg.step()  # one label each and no labeler left: every frame ends exhausted
    assert admin.xlen("gtx:final") == len(fids) and not admin.zcard("gtx:open")
    # the reader's status shows the shards and their owner
    status = pipeline_status(server.client("gtx-reader"), Keys("gtx"))
    assert status["shards"] == SHARDS and status["shard_owners"] == ["agg-a"] * SHARDS
    assert status["labels_stream_length"] == len(fids)
    agg.release()
    assert admin.acl_log() == []


@pytest.mark.redis
def test_every_services_user_reads_status_of_a_sharded_pipeline(server: Server) -> None:
    """README: every service's user runs ``gtx-stream status --check`` (its health check). On a
    sharded pipeline status also lists the aggregators alive (ZRANGE gtx:aggregators), which
    the aggregator's own user was refused."""
    admin = server.admin()
    settings = AggregatorSettings(shards=SHARDS, shard_lease_seconds=1.0)
    agg = ShardedAggregator(server.client("gtx-aggregator"), Keys("gtx"), settings,
                            consumer="agg-a", enqueue=Capture())  # fmt: skip
    agg.setup()
    agg.step()
    admin.acl_log_reset()
    for user in ("ingester", "labeler", "aggregator", "exporter", "label-server", "reader"):
        status = pipeline_status(server.client(f"gtx-{user}"), Keys("gtx"))
        assert status["shard_owners"] == ["agg-a"] * SHARDS, user
        assert list(status["aggregators"]) == ["agg-a"], user
    agg.release()
    assert admin.acl_log() == []


@pytest.mark.redis
def test_an_application_reads_final_labels_through_its_group_as_the_consumer(
    server: Server,
) -> None:
    """docs/access.md: an application that only reads final labels (``client.final_labels``)
    needs gtx-consumer with the consumer-group rules; it also reads the stored shard count
    and claims a dead consumer's entries (XAUTOCLAIM), which that user was refused."""
    from gtx_stream.client.consume import final_labels
    from tests.store.test_access import acl_lines, passwords

    admin = server.admin()
    line = next(x for x in acl_lines() if x.startswith("user gtx-consumer "))
    rules = line.split(" ", 2)[2].replace("%R~gtx:final", "~gtx:final")
    admin.execute_command("ACL", "SETUSER", "gtx-app", *rules.split(),
                          "+xreadgroup", "+xack", "+xautoclaim", "+xgroup|create")  # fmt: skip
    admin.set("gtx:shards", SHARDS)
    for i in range(3):
        rec = FinalRecord(frame_id=f"cam-{i}", label=1, p1=0.99, confidence=0.99,
                          reason="confident", method="gtx", labelers=["ann"], labels=[1],
                          accuracies=[0.9], finalised_at=time.time())  # fmt: skip
        admin.xadd("gtx:final", rec.to_fields())  # type: ignore[arg-type]
    admin.acl_log_reset()
    app = redis.Redis(port=server.port, username="gtx-app", password=passwords()["gtx-consumer"])
    read = final_labels(app, Keys("gtx"), "app", "app-1", socket_timeout=2.0, idle_seconds=0.5)
    assert [rec.frame_id for rec in read] == ["cam-0", "cam-1", "cam-2"]
    assert admin.acl_log() == []
