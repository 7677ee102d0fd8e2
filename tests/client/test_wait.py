"""client.wait: the final record once the aggregator finalises, without polling; clear errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import redis

from gtx_stream.client import Client, FrameDropped, UnknownFrame
from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.aggregate.sweeper import GONE_REASON
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import Capture, make_aggregator, register, run_until_idle

ACCURACIES = {"a": 0.9, "b": 0.85, "c": 0.8}


def grey(level: int) -> np.ndarray:
    return np.full((48, 64, 3), level, np.uint8)


def finalise_all(r: redis.Redis, keys: Keys) -> None:
    register(r, keys, ACCURACIES)
    capture = Capture()
    run_until_idle(make_aggregator(r, keys, capture), r, keys, capture, ACCURACIES)


def test_wait_returns_each_record_when_the_aggregator_finalises_it(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    fids = [client.submit(grey(i), source="cam", truth=i % 2, metadata={"n": str(i)})
            for i in range(4)]  # fmt: skip
    got: dict[str, FinalRecord] = {}
    errors: list[BaseException] = []

    def waiter(fid: str) -> None:
        try:
            got[fid] = client.wait(fid, timeout=30)  # a connection each, from its pool
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=waiter, args=(fid,)) for fid in fids]
    for t in threads:
        t.start()
    time.sleep(0.2)  # the waiters block on the final stream first
    finalise_all(r, keys)
    finalised = time.monotonic()
    for t in threads:
        t.join(30)
    assert not errors
    # woken by the final stream, not by the look at the frame hash every 5 s
    assert time.monotonic() - finalised < 2
    final = {f["frame_id"]: entry_id for entry_id, f in r.xrange(keys.final)}  # type: ignore[union-attr]
    assert sorted(got) == sorted(fids)
    for fid, rec in got.items():
        assert rec.frame_id == fid and rec.entry_id == final[fid]
        assert rec.source == "cam" and rec.n_labels >= 1 and rec.image_key == keys.image(fid)
    # finalised already: answered from the frame hash, the same record
    again = client.wait(fids[0], timeout=1)
    assert again == got[fids[0]]
    assert client.metadata(fids[3]) == {"n": "3"}


def calls(r: redis.Redis) -> dict[str, int]:
    """Calls of each command the server has run."""
    stats = r.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def test_wait_times_out_without_polling(client: Client, r: redis.Redis) -> None:
    fid = client.submit(grey(1), source="cam")
    before = calls(r)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=f"frame {fid} is not final after 1.5 s"):
        client.wait(fid, timeout=1.5)
    assert 1.5 <= time.monotonic() - t0 < 2.5
    # a look at the frame, one blocking XREAD to the deadline, a last look at the frame
    after = calls(r)
    assert {cmd: after.get(cmd, 0) - before.get(cmd, 0) for cmd in ("hgetall", "xread")} == {
        "hgetall": 2, "xread": 1,
    }  # fmt: skip


def test_a_timeout_of_none_waits_until_the_frame_is_final(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    client.settings.redis.socket_timeout = 0.4  # a quiet block of 0.2 s: several go by
    fid = client.submit(grey(1), source="cam")
    finaliser = threading.Timer(1.0, finalise_all, args=(r, keys))
    finaliser.start()
    t0 = time.monotonic()
    record = client.wait(fid, timeout=None)
    assert record.frame_id == fid and time.monotonic() - t0 >= 1.0
    finaliser.join(30)


def test_an_unknown_frame_is_a_clear_error(client: Client) -> None:
    with pytest.raises(UnknownFrame, match="no frame nope-1"):
        client.wait("nope-1", timeout=5)


def test_a_dropped_frame_is_a_clear_error(client: Client, r: redis.Redis, keys: Keys) -> None:
    fid = client.submit(grey(1), source="cam")
    r.delete(keys.frame(fid))  # its TTL ran out before it was finalised
    with pytest.raises(FrameDropped, match="dropped before it was finalised") as info:
        client.wait(fid, timeout=5)
    assert info.value.reason == GONE_REASON
    # the sweeper dead-letters it (behind a label that could not be applied)
    r.xadd(keys.dead, {"kind": "label", "reason": "unknown frame", "payload": "{}"})
    ScriptRunner(r).run_one(frame_scripts.drop_frame(keys, fid, "a reason of its own"))
    r.xadd(keys.dead, {"kind": "label", "reason": "unknown frame", "payload": "not json"})
    with pytest.raises(FrameDropped) as info:
        client.wait(fid, timeout=5)
    assert info.value.reason == "a reason of its own"


def test_a_frame_that_expires_while_waited_on_is_reported(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    """The waiter looks at the hash again after each quiet block (socket_timeout / 2)."""
    client.settings.redis.socket_timeout = 0.4
    fid = client.submit(grey(1), source="cam")
    threading.Timer(0.3, lambda: r.delete(keys.frame(fid))).start()
    t0 = time.monotonic()
    with pytest.raises(FrameDropped):
        client.wait(fid, timeout=10)
    assert time.monotonic() - t0 < 2
