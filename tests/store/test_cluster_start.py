"""A service started while its Redis Cluster is down: with ``check=False`` (the ingester) it
waits and runs once the cluster is up, and SIGTERM or SIGINT while it waits exit 0 at once;
with ``check=True`` (the aggregator) it stays a one-line error, exit 2. A cluster that goes
down whole after start raises a ConnectionError (``UNAVAILABLE``), which services retry.

redis-py's ``RedisCluster`` reads the slot map when it is built, and raises a bare
``RedisClusterException`` (no RedisError) when no node answers: before, every service stopped
at once with one line, and one whose cluster went down after start ended with a traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from redis.exceptions import RedisClusterException

from gtx_stream.config import ConfigError, Settings
from gtx_stream.ops.demo import write_config
from gtx_stream.store.cluster import UNAVAILABLE, ClusterUnreachable, not_up_yet, refresh
from gtx_stream.store.connection import StoppedWaiting, connect
from tests import cluster_fixtures
from tests.cluster_fixtures import LocalCluster

WAITING = "is not up"  # the ingester's log line per try while the cluster is down


def _config(tmp_path: Path, ports: list[int], **redis: object) -> Path:
    url = ",".join(f"redis://127.0.0.1:{p}" for p in ports[:2])  # two startup nodes
    path = tmp_path / "cluster.toml"
    write_config(path, {"redis": {"url": url, "cluster": True, **redis}}, [])
    return path


def _images(folder: Path, n: int) -> Path:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), np.full((24, 32, 3), 40 * i, np.uint8))
    return folder


def _ingest(config: Path, source: Path, err: Path) -> subprocess.Popen[str]:
    with err.open("w") as stderr:  # the process keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "gtx_stream", "ingest", str(source), "--config", str(config)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
        )  # fmt: skip


def _wait_for_line(proc: subprocess.Popen[str], err: Path, line: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while line not in err.read_text():
        assert proc.poll() is None, f"exited {proc.returncode}: {err.read_text()}"
        assert time.monotonic() < deadline, f"no {line!r} in: {err.read_text()}"
        time.sleep(0.05)


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_an_ingester_started_before_its_cluster_waits_then_opens_its_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if (reason := cluster_fixtures.cluster_unavailable()) is not None:
        pytest.skip(reason)
    ports = cluster_fixtures._free_ports(6)
    monkeypatch.setattr(cluster_fixtures, "_free_ports", lambda n: ports[:n])  # known ahead
    err = tmp_path / "ingest.err"
    proc = _ingest(_config(tmp_path, ports), _images(tmp_path / "frames", 5), err)
    cluster = LocalCluster()
    try:
        _wait_for_line(proc, err, WAITING, 20)
        time.sleep(1.0)
        assert proc.poll() is None, err.read_text()  # still waiting, not exited
        cluster.start()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.read_text()
        assert "opened 5" in out, out
        with cluster.client() as client:
            assert client.dbsize(target_nodes=client.PRIMARIES) > 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.stop()
    log = err.read_text()
    tries = log.count(WAITING)
    assert tries >= 2 and "Traceback" not in log, log
    assert "is up after" in log, log
    # one line per try, backed off: not a line per node or per millisecond
    assert tries < 40, log


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.timeout(30)
def test_a_stop_signal_while_waiting_for_the_cluster_exits_0_at_once(
    tmp_path: Path, signum: int
) -> None:
    ports = cluster_fixtures._free_ports(2)  # nothing listens there
    err = tmp_path / "ingest.err"
    proc = _ingest(_config(tmp_path, ports), _images(tmp_path / "frames", 1), err)
    try:
        _wait_for_line(proc, err, WAITING, 20)
        t0 = time.monotonic()
        proc.send_signal(signum)
        proc.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.read_text()
    assert took < 5, took
    assert "stopped while waiting for the redis cluster" in err.read_text()


@pytest.mark.timeout(30)
def test_the_aggregator_on_a_cluster_that_is_down_is_still_one_line_and_exit_1(
    tmp_path: Path,
) -> None:
    """It connects with ``check=True``, as on a standalone Redis that is down; exit 1, not 2
    (a configuration error's, which systemd's RestartPreventExitStatus=2 leaves down), since
    the cluster may be up when it is restarted."""
    state, queue = cluster_fixtures._free_ports(3)[:2], cluster_fixtures._free_ports(1)[0]
    config = _config(tmp_path, state, queue_url=f"redis://127.0.0.1:{queue}")
    done = subprocess.run(
        [sys.executable, "-m", "gtx_stream", "aggregator", "--config", str(config)],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("redis cluster at ") and done.stderr.count("\n") == 1
    assert "is unreachable" in done.stderr


def _settings(ports: list[int]) -> Settings:
    url = ",".join(f"redis://127.0.0.1:{p}" for p in ports)
    return Settings(redis={"url": url, "cluster": True})  # type: ignore[arg-type]


@pytest.mark.timeout(30)
def test_a_waiting_connect_ends_when_its_stop_event_is_set() -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    with pytest.raises(StoppedWaiting) as raised:
        connect(_settings(cluster_fixtures._free_ports(2)), check=False, stop=stop)
    assert raised.value.code == 0
    assert 0.4 < time.monotonic() - t0 < 3


def test_refused_credentials_and_a_non_cluster_server_are_not_waited_for() -> None:
    def connecting(cause: Exception) -> RedisClusterException:
        err = RedisClusterException(
            f"Redis Cluster cannot be connected. Please provide at least one reachable node: "
            f"{cause}"
        )
        err.__cause__ = cause
        return err

    from redis.exceptions import AuthenticationError, ConnectionError

    assert not_up_yet(connecting(ConnectionError("Error 111 connecting. Connection refused.")))
    assert not_up_yet(RedisClusterException("All slots are not covered after query all ..."))
    assert not not_up_yet(connecting(AuthenticationError("invalid username-password pair")))
    assert not not_up_yet(connecting(RedisClusterException("Cluster mode is not enabled")))
    assert not not_up_yet(RedisClusterException("MGET - all keys must map to the same key slot"))


def test_a_server_that_is_no_cluster_node_is_one_line_even_with_check_false() -> None:
    """A standalone redis-server named as the cluster: waiting would never end."""

    def no_cluster(*args: object, **kwargs: object) -> None:
        cause = RedisClusterException("Cluster mode is not enabled on this node")
        raise RedisClusterException(
            "Redis Cluster cannot be connected. Please provide at least one reachable node: "
            f"{cause}"
        ) from cause

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("gtx_stream.store.connection.cluster_client", no_cluster)
        with pytest.raises(ConfigError, match="Cluster mode is not enabled"):
            connect(_settings([1]), check=False)


@pytest.mark.redis
@pytest.mark.timeout(90)
def test_a_cluster_that_goes_down_whole_after_start_raises_what_services_retry() -> None:
    if (reason := cluster_fixtures.cluster_unavailable()) is not None:
        pytest.skip(reason)
    with LocalCluster() as cluster:
        client = connect(_settings(cluster.ports[:2]), check=False)
        try:
            client.set("k", 1)
            for proc in cluster.procs.values():
                proc.kill()
                proc.wait()
            with pytest.raises(ClusterUnreachable) as raised:  # was a bare RedisClusterException
                client.set("k", 2)
            assert isinstance(raised.value, UNAVAILABLE)
            refresh(client)  # type: ignore[arg-type]  # quiet: no node answers yet
            for port in cluster.ports:  # the same nodes again: their nodes.conf is kept
                cluster._spawn(port)
            cluster.wait_ok(cluster.ports, 30)
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.set("k", 3)
                    break
                except UNAVAILABLE:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            assert client.get("k") == b"3"
        finally:
            client.close()
