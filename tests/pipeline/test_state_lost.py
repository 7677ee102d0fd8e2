"""A Redis that lost the pipeline's state under a running aggregator or exporter: restarted
without persistence, or the stream it reads deleted while its read blocked on it. The process
stops with one line naming what happened (exit 1), not a traceback, and does not go on reading
a group that is gone. Real processes, on a redis-server of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from gtx_stream.config import ExportSettings
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.pipeline.aggregate.aggregator import GROUP
from gtx_stream.store.keys import Keys

EXIT_WITHIN = 15.0


def _group_exists(client: redis.Redis, stream: str, group: str) -> bool:
    try:
        return any(g["name"] == group for g in client.xinfo_groups(stream))
    except redis.ResponseError:
        return False


@pytest.mark.redis
@pytest.mark.parametrize("how", ["restart", "deleted"])
@pytest.mark.parametrize("service", ["aggregator", "export"])
def test_a_service_stops_in_one_line_when_redis_lost_its_state(
    tmp_path: Path, how: str, service: str
) -> None:
    server = EmbeddedRedis(data_dir=tmp_path, appendonly=False).start()
    keys = Keys("lost")
    env = {**os.environ, "GTX_REDIS__URL": server.url, "GTX_REDIS__PREFIX": keys.prefix,
           "GTX_CONFIG": str(tmp_path / "none.toml")}  # fmt: skip
    (tmp_path / "none.toml").write_text("")
    if service == "aggregator":
        command, stream, group = ["aggregator", "--consumer", "a1"], keys.labels, GROUP
    else:
        command = ["export", "--out", str(tmp_path / "dataset"), "--follow"]
        stream, group = keys.final, ExportSettings().group
    proc = subprocess.Popen([sys.executable, "-m", "gtx_stream", *command],
                            env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        deadline = time.monotonic() + 30
        while not _group_exists(client, stream, group):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, f"{service} never created its group"
            time.sleep(0.05)
        time.sleep(0.5)  # blocking in XREADGROUP
        if how == "restart":
            server.kill()
            time.sleep(0.5)
            server.start()
        else:
            client.delete(stream)
        code = proc.wait(EXIT_WITHIN)
        err = proc.communicate()[1]
        assert code == 1, err
        assert "Redis lost the pipeline's state" in err and "Traceback" not in err, err
        assert "--appendonly yes" in err
        # it stopped instead of creating the group again on an empty Redis
        assert not _group_exists(client, stream, group)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.cleanup()
