"""A labeler worker process while its Redis restarts: a redis-server of the test's own, killed
(SIGKILL, no shutdown save) and started again on the same port."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from rq.registry import StartedJobRegistry

from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.pipeline.label.job import ride_out
from gtx_stream.pipeline.label.requests import enqueue_request
from gtx_stream.store.cluster import UNAVAILABLE
from gtx_stream.store.keys import Keys
from tests.labeler_fixtures import SLEEP_VARIABLE
from tests.pipeline.test_labeler import FIX, _cli, labels, put_frame

pytestmark = pytest.mark.redis

KEYS = Keys("gtx")
JOB_SECONDS = 2.0  # how long the python labeler takes per frame
EXIT_WITHIN = 10.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    (tmp_path / "redis").mkdir()
    srv = EmbeddedRedis(data_dir=tmp_path / "redis").start()
    yield srv
    srv.cleanup()


def _client(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis(port=server.port, decode_responses=True, socket_timeout=5)


def _wait(what: str, condition: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.time() + 30
    while not condition():
        assert proc.poll() is None, f"the worker exited {proc.returncode}:\n{_output(proc)}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _output(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.kill()
    try:
        return proc.communicate(timeout=30)[0]
    except ValueError:  # read already (a failure message took it)
        return ""


def _busy_worker(server: EmbeddedRedis, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """A `gtx-stream labeler` process in the middle of a JOB_SECONDS request, and its job id."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[redis]\nurl = "{server.url}"\nsocket_timeout = 2.0\n\n'
        f'[[labelers]]\nid = "slow"\nbackend = "python"\ntarget = "{FIX}:slow_parity"\n'
    )
    proc = _cli(config, "--id", "slow", env={SLEEP_VARIABLE: str(JOB_SECONDS)})
    r = _client(server)
    _wait("the labeler to be live", lambda: r.zscore(KEYS.live, "slow") is not None, proc)
    put_frame(r, KEYS, "cam-1", frame_index="1")
    job = enqueue_request(r, KEYS, "slow", "cam-1", "r1", lease_seconds=30)
    started = StartedJobRegistry(KEYS.queue("slow"), connection=r)
    _wait("the request to start", lambda: started.count == 1, proc)
    return proc, job.id


def _restart(server: EmbeddedRedis) -> None:
    """SIGKILL the server, keep it down past the request in hand, start it on the same port."""
    server.kill()
    time.sleep(JOB_SECONDS + 1.0)  # the label comes due while Redis is away
    server.start()


def test_a_busy_worker_rides_out_a_redis_restart(server: EmbeddedRedis, tmp_path: Path) -> None:
    proc, _ = _busy_worker(server, tmp_path)
    try:
        _restart(server)
        r = _client(server)
        # the label of the request in hand arrives once Redis is back (the restart lost the
        # rest: no persistence), and the worker serves the next request
        _wait("the label sent after the restart", lambda: len(labels(r, KEYS)) == 1, proc)
        [entry] = labels(r, KEYS)
        assert (entry["frame_id"], entry["request_id"], entry["label"]) == ("cam-1", "r1", "1")
        put_frame(r, KEYS, "cam-2", frame_index="2")
        enqueue_request(r, KEYS, "slow", "cam-2", "r2", lease_seconds=30)
        _wait("the next request answered", lambda: len(labels(r, KEYS)) == 2, proc)
        assert labels(r, KEYS)[1]["request_id"] == "r2"
        _wait("the heartbeat back", lambda: r.zscore(KEYS.live, "slow") is not None, proc)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(EXIT_WITHIN)
    finally:
        out = _output(proc)
    assert code == 0, out
    assert r.zscore(KEYS.live, "slow") is None


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
def test_sigterm_while_redis_is_down_exits_within_10_s(
    server: EmbeddedRedis, tmp_path: Path, busy: bool
) -> None:
    """Busy: the request in hand is left to its lease. Idle: RQ's own reconnect loop (sleeps
    of 1, 2, 4 ... 32 s) would keep the process up until Redis is back."""
    proc, _ = _busy_worker(server, tmp_path)
    try:
        if not busy:
            r = _client(server)
            _wait("the request answered", lambda: len(labels(r, KEYS)) == 1, proc)
        server.kill()
        if not busy:
            time.sleep(2.0)  # let the idle worker notice the outage
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_WITHIN} s after SIGTERM:\n{_output(proc)}")
        took = time.monotonic() - sent
    finally:
        out = _output(proc)
    assert code == 0, out
    if busy:
        assert "left to its lease" in out, out
    print(f"exit 0 {took:.1f} s after SIGTERM")


@pytest.mark.parametrize(
    "error",
    [
        redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
        redis.exceptions.TryAgainError("TRYAGAIN Multiple keys request during rehashing"),
        redis.ConnectionError("Connection refused"),
    ],
)
def test_a_request_rides_out_a_cluster_failing_over(error: Exception) -> None:
    """A pipeline on a Redis Cluster whose master fails over answers CLUSTERDOWN or TRYAGAIN
    for a moment: the request waits and tries again, as through a restart."""
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise error
        return "read"

    assert ride_out(flaky, "reading a frame", threading.Event()) == "read"
    assert len(calls) == 3
    assert isinstance(error, UNAVAILABLE)
