"""What a Redis Cluster refuses, in one line: label requests without a standalone Redis of
their own (RQ does not run on a cluster)."""

from __future__ import annotations

import socket

import pytest
from redis.exceptions import RedisClusterException

from gtx_stream.config import ConfigError, Settings
from gtx_stream.store import connection
from gtx_stream.store.connection import connect, connect_both, connect_queue


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
