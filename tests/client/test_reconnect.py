"""A Redis restart while the client waits or iterates: ridden out for ``reconnect_seconds``,
nothing handed out twice or lost, one WARNING and one INFO line per outage; a Redis that stays
down is one line after ``reconnect_seconds``. Against a redis-server of the test's own
(append-only file: it keeps its data over the restart), killed with SIGKILL and started again
on the same port."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis

from gtx_stream.client import Client, RedisUnreachable, StateLost
from gtx_stream.config import RedisSettings, Settings
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.store.keys import Keys
from tests.client.test_final_labels import add_finals
from tests.client.test_wait import finalise_all

LOGGER = "gtx_stream.client.reconnect"
keys = Keys("gtx")


@pytest.fixture
def client(restartable: EmbeddedRedis) -> Iterator[Client]:
    # a socket timeout of 1 s: a quiet XREADGROUP blocks 0.5 s at a time
    made = Client(Settings(redis=RedisSettings(url=restartable.url, socket_timeout=1.0)))
    yield made
    made.close()


@pytest.fixture
def r(restartable: EmbeddedRedis) -> Iterator[redis.Redis]:
    raw = redis.Redis.from_url(restartable.url, decode_responses=True)
    yield raw
    raw.close()


def restart_later(server: EmbeddedRedis, down_for: float, then: object = None) -> threading.Thread:
    """Start ``server`` again after ``down_for`` seconds, then call ``then()``."""

    def run() -> None:
        time.sleep(down_for)
        server.start()
        if callable(then):
            then()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(rec.levelno, rec.getMessage()) for rec in caplog.records if rec.name == LOGGER]


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_final_labels_rides_out_two_restarts_and_hands_out_every_record_once(
    restartable: EmbeddedRedis, client: Client, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed once mid-batch (with two entries read into this consumer's pending list by a read
    whose reply never came: the restart must hand those out), once while the read blocks."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_finals(r, keys, range(12))
    restarts: list[threading.Thread] = []
    got: list[str] = []
    records = client.final_labels("app", "app-1", batch_size=5, idle_seconds=3,
                                  reconnect_seconds=20)  # fmt: skip
    for rec in records:
        got.append(rec.frame_id)
        if rec.frame_id == "cam-7":  # cam-5..9 in hand, 5 and 6 processed, none acknowledged
            lost = r.xreadgroup("app", "app-1", {keys.final: ">"}, count=2)
            assert [f["frame_id"] for _, f in lost[0][1]] == ["cam-10", "cam-11"]
            restartable.kill()
            after = restart_later(restartable, 1.0, lambda: add_finals(r, keys, range(12, 20)))
            restarts.append(after)
        if rec.frame_id == "cam-19":  # all read: the next read blocks, and Redis dies under it

            def kill_and_restart() -> None:
                time.sleep(0.3)
                restartable.kill()
                restart_later(restartable, 1.0, lambda: add_finals(r, keys, range(20, 25))).join()

            restarts.append(threading.Thread(target=kill_and_restart, daemon=True))
            restarts[-1].start()
    for thread in restarts:
        thread.join(10)
    assert got == [f"cam-{i}" for i in range(25)]  # each once, in order
    assert r.xpending(keys.final, "app")["pending"] == 0  # every one acknowledged
    lines = outage_lines(caplog)
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO] * 2, lines
    assert all(restartable.url in message for _, message in lines)
    assert "reconnecting for up to 20 s" in lines[0][1] and "is back after" in lines[1][1]


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_wait_returns_the_record_finalised_after_a_restart(
    restartable: EmbeddedRedis, client: Client, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    fid = client.submit(np.full((48, 64, 3), 200, np.uint8), source="cam", truth=1)
    got: list[object] = []
    waiter = threading.Thread(target=lambda: got.append(client.wait(fid, timeout=30)))
    waiter.start()
    time.sleep(0.3)  # it blocks on the final stream
    restartable.kill()
    restart_later(restartable, 1.0, lambda: finalise_all(r, keys)).join(10)
    waiter.join(20)
    (record,) = got
    assert record == client.wait(fid, timeout=1)  # the frame's final record
    assert [level for level, _ in outage_lines(caplog)] == [logging.WARNING, logging.INFO]


def one_line_after(seconds: float, call: object) -> tuple[str, float]:
    t0 = time.monotonic()
    with pytest.raises(RedisUnreachable) as info:
        call()  # type: ignore[operator]
    return str(info.value), time.monotonic() - t0


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_a_redis_that_stays_down_is_one_line_after_reconnect_seconds(
    restartable: EmbeddedRedis, client: Client, r: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    add_finals(r, keys, range(3))
    fid = client.submit(np.full((48, 64, 3), 200, np.uint8), source="cam")
    records = client.final_labels("app", "app-1", reconnect_seconds=1.5)
    assert next(records).frame_id == "cam-0"
    restartable.kill()
    message, took = one_line_after(1.5, lambda: list(records))
    assert 1.5 <= took < 3.5, took
    assert "\n" not in message and restartable.url in message, message
    assert "gave up after 1.5 s of reconnecting (reconnect_seconds=1.5)" in message, message
    assert isinstance(RedisUnreachable(), redis.ConnectionError)  # caught as before
    message, took = one_line_after(1.0, lambda: client.wait(fid, reconnect_seconds=1))
    assert 1.0 <= took < 3.0 and "\n" not in message and restartable.url in message, message
    # one WARNING per outage, no INFO: it never came back
    assert [level for level, _ in outage_lines(caplog)] == [logging.WARNING] * 2


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_reconnect_seconds_0_raises_at_once_and_a_bad_value_is_refused(
    restartable: EmbeddedRedis, client: Client, r: redis.Redis
) -> None:
    add_finals(r, keys, range(1))
    fid = client.submit(np.full((48, 64, 3), 200, np.uint8), source="cam")
    for bad in (-1, "5", float("nan"), True):
        with pytest.raises(ValueError, match="reconnect_seconds must be a number >= 0"):
            client.final_labels("app", "app-1", reconnect_seconds=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="reconnect_seconds must be a number >= 0"):
            client.wait(fid, reconnect_seconds=bad)  # type: ignore[arg-type]
    restartable.kill()
    t0 = time.monotonic()
    with pytest.raises(redis.ConnectionError) as info:
        list(client.final_labels("app", "app-1", reconnect_seconds=0))
    assert not isinstance(info.value, RedisUnreachable)  # redis-py's own, as before
    with pytest.raises(redis.ConnectionError):
        client.wait(fid, reconnect_seconds=0)
    assert time.monotonic() - t0 < 1.0


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_wait_keeps_its_timeout_while_redis_is_down(
    restartable: EmbeddedRedis, client: Client
) -> None:
    fid = client.submit(np.full((48, 64, 3), 200, np.uint8), source="cam")
    restartable.kill()
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=f"frame {fid} is not final after 1 s .redis at "):
        client.wait(fid, timeout=1, reconnect_seconds=20)
    assert 1.0 <= time.monotonic() - t0 < 2.0


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_a_restart_that_lost_the_group_is_one_line(tmp_path: Path) -> None:
    """A Redis that keeps nothing on disk (as the machine's own at 6379) comes back without the
    group: the loop says so instead of reading an empty stream for ever."""
    server = EmbeddedRedis(data_dir=tmp_path, appendonly=False).start()
    forgetful = Client(Settings(redis=RedisSettings(url=server.url, socket_timeout=1.0)))
    raw = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        add_finals(raw, keys, range(2))
        records = forgetful.final_labels("app", "app-1", reconnect_seconds=20)
        assert next(records).frame_id == "cam-0"
        server.kill()
        back = restart_later(server, 0.5)  # comes back empty while the loop reconnects
        with pytest.raises(StateLost, match="consumer group 'app' of gtx:final") as info:
            list(records)
        back.join(10)
        assert "\n" not in str(info.value) and "--appendonly yes" in str(info.value)
    finally:
        forgetful.close()
        raw.close()
        server.cleanup()
