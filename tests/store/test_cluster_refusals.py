"""What a Redis Cluster refuses, in one line: label requests without a standalone Redis of
their own (RQ does not run on a cluster), and a server of the wrong kind for its setting."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisClusterException

from gtx_stream.config import ConfigError, Settings
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.store import connection
from gtx_stream.store.connection import connect, connect_both, connect_queue
from tests import cluster_fixtures

local_cluster = cluster_fixtures.local_cluster  # the fixture


def _settings(**redis: object) -> Settings:
    return Settings(redis={"url": "redis://127.0.0.1:1", **redis})  # type: ignore[arg-type]


def test_a_cluster_needs_a_standalone_redis_for_the_label_requests() -> None:
    settings = _settings(cluster=True)
    for connecting in (connect_both, connect_queue):
        with pytest.raises(ConfigError, match="RQ does not run on a Redis Cluster") as err:
            connecting(settings, check=False)
        assert "\n" not in str(err.value)
        assert "GTX_REDIS__QUEUE_URL" in str(err.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_cluster_nobody_answers_is_refused_in_one_line_without_its_password() -> None:
    """redis-py connects to a cluster when the client is built, and raises an exception that is
    no RedisError: it came out of every command as a traceback. (With ``check=False`` the
    client waits for the cluster instead: tests/store/test_cluster_start.py.)"""
    a, b = _free_port(), _free_port()
    url = f"redis://gtx-reader:pw-7@127.0.0.1:{a},127.0.0.1:{b}"
    settings = _settings(url=url, cluster=True, queue_url="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError, match="^redis cluster at .* is unreachable: ") as err:
        connect(settings, check=True)
    assert "\n" not in str(err.value) and "pw-7" not in str(err.value)
    assert f"redis://gtx-reader:***@127.0.0.1:{a},127.0.0.1:{b}" in str(err.value)


def test_a_cluster_that_refuses_the_credentials_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    refused = RedisClusterException(
        "Redis Cluster cannot be connected. Please provide at least one reachable node: "
        "invalid username-password pair or user is disabled."
    )

    def cluster_client(*args: object, **kwargs: object) -> None:
        raise refused

    monkeypatch.setattr(connection, "cluster_client", cluster_client)
    settings = _settings(url="redis://gtx-reader:pw-7@h:1", cluster=True)
    with pytest.raises(ConfigError) as err:
        connect(settings)
    assert str(err.value) == (
        "redis cluster at redis://gtx-reader:***@h:1: authentication failed: "
        "invalid username-password pair or user is disabled."
    )


@pytest.fixture
def lone_node(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A cluster-enabled redis-server that no ``redis-cli --cluster create`` has given slots:
    a cluster not created yet, and a cluster node all the same."""
    args = ["--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf")]
    port = cluster_fixtures._free_ports(1)[0]  # its bus port (+10000) free too
    with EmbeddedRedis(port, extra_args=args) as node:
        yield node


@pytest.mark.redis
def test_a_cluster_not_created_yet_is_not_called_unreachable(lone_node: EmbeddedRedis) -> None:
    """Before, 'is unreachable: All slots are not covered ...': its node had answered."""
    settings = _settings(url=lone_node.url, cluster=True, queue_url="redis://127.0.0.1:1/0")
    with pytest.raises(ConfigError) as err:
        connect(settings, check=True)
    message = str(err.value)
    assert message.startswith(f"redis cluster at {lone_node.url} does not serve every slot (")
    assert "unreachable" not in message and "\n" not in message


@pytest.mark.redis
def test_a_cluster_node_named_as_the_queue_redis_is_refused_in_one_line(
    lone_node: EmbeddedRedis,
) -> None:
    """Before, PING passed, and the labeler worker died of RQ's first MOVED (a traceback)."""
    with EmbeddedRedis() as state:
        settings = _settings(url=state.url, queue_url=lone_node.url)
        with pytest.raises(ConfigError) as err:
            connect_queue(settings)
        assert str(err.value) == (
            f"redis.queue_url redis at {lone_node.url} is a Redis Cluster node: RQ does not "
            "run on a Redis Cluster, so the label requests need a standalone Redis"
        )
        connect_queue(_settings(url=state.url, queue_url=state.url)).close()  # standalone: fine


@pytest.mark.redis
def test_a_cluster_node_without_redis_cluster_set_says_to_set_it(
    lone_node: EmbeddedRedis,
) -> None:
    """Before, PING passed and the first key of another node's slot printed
    'redis error: 9301 127.0.0.1:7202' (a bare MOVED)."""
    with pytest.raises(ConfigError, match="^redis at .* is a Redis Cluster node: set redis.cl"):
        connect(_settings(url=lone_node.url))


@pytest.mark.redis
def test_a_standalone_redis_named_as_the_cluster_says_to_unset_redis_cluster() -> None:
    with EmbeddedRedis() as standalone:
        settings = _settings(url=standalone.url, cluster=True, queue_url=standalone.url)
        with pytest.raises(ConfigError) as err:
            connect(settings)
    assert str(err.value) == (
        f"redis cluster at {standalone.url} is no cluster node (Cluster mode is not enabled on "
        "this node): a standalone Redis needs redis.cluster = false"
    )


@pytest.mark.redis
def test_the_ingester_on_a_cluster_node_without_redis_cluster_says_to_set_it(
    local_cluster: cluster_fixtures.LocalCluster, tmp_path: Path
) -> None:
    """The ingester connects without the start-up check (it rides out a Redis not up yet), so
    the first key of another node's slot was a bare MOVED: 'error: Redis: 11152 127.0.0.1:7203'.
    Whichever master it is given, one line that says what to set."""
    import os
    import subprocess
    import sys

    from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv

    truths = write_synthetic_video(tmp_path / "v.avi", 5, seed=0)
    write_truth_csv(tmp_path / "t.csv", truths)
    (tmp_path / "none.toml").write_text("")
    for port, _ in local_cluster.masters():
        url = f"redis://127.0.0.1:{port}/0"
        env = {**os.environ, "GTX_REDIS__URL": url, "GTX_CONFIG": str(tmp_path / "none.toml")}
        done = subprocess.run(
            [sys.executable, "-m", "gtx_stream", "ingest", str(tmp_path / "v.avi"),
             "--truth", str(tmp_path / "t.csv")],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr  # a log line may come before it
        assert done.stderr.strip().splitlines()[-1] == (
            f"gtx-stream ingest: error: redis at {url} is a Redis Cluster node: set "
            "redis.cluster = true (GTX_REDIS__CLUSTER) and a standalone redis.queue_url"
        )
