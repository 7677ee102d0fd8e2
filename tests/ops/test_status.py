"""`gtx-stream status` and `gtx-stream tail` against a real Redis."""

from __future__ import annotations

import json

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.ops.status import pipeline_status
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    make_aggregator,
    open_frame,
    post_failure,
    register,
    run_until_idle,
)

ACC = {"a": 0.9, "b": 0.8, "c": 0.7}


@pytest.fixture
def finished(r: redis.Redis, keys: Keys) -> redis.Redis:
    register(r, keys, ACC)
    for i in range(5):
        open_frame(r, keys, i, i % 2)
    cap = Capture()
    run_until_idle(make_aggregator(r, keys, cap, budget=100), r, keys, cap, ACC)
    return r


def test_status_counts(finished: redis.Redis, keys: Keys) -> None:
    st = pipeline_status(finished, keys)
    assert st["frames_open"] == 0
    assert st["frames_finalised"] == st["final_stream_length"] == 5
    assert st["budget_limit"] == 100
    assert (
        st["budget_spent"]
        == st["labels_applied"]
        == sum(v["labels"] for v in st["labelers"].values())
    )
    assert st["budget_left"] == 100 - st["budget_spent"]
    assert st["labelers"]["a"]["accuracy"] == 0.9


def test_status_and_tail_cli_hide_the_password(
    finished: redis.Redis, redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("GTX_REDIS__URL", redis_url)
    assert main(["status", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["frames_finalised"] == 5
    assert main(["tail", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    recs = [json.loads(x) for x in lines]
    assert sorted(r["frame_id"] for r in recs) == [f"src-{i}" for i in range(5)]
    assert all(isinstance(r["labels"], list) and r["label"] in (0, 1) for r in recs)

    secret = redis_url.replace("redis://", "redis://user:s3cret@")
    monkeypatch.setenv("GTX_REDIS__URL", secret)
    assert main(["status"]) != 0  # wrong credentials: a one-line error, no traceback
    err = capsys.readouterr().err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1


def test_check_healthy_stalled_and_unreachable(
    r: redis.Redis, keys: Keys, redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv("GTX_REDIS__URL", redis_url)
    assert main(["status", "--check"]) == 0  # nothing open: healthy
    register(r, keys, ACC, live=False)  # no labeler live: nothing can progress
    open_frame(r, keys, 0, 1)
    cap = Capture()
    make_aggregator(r, keys, cap).step(block_ms=1)
    assert main(["status", "--check"]) == 0  # open, but not for long
    monkeypatch.setenv("GTX_AGGREGATOR__STALL_SECONDS", "0.01")
    import time

    time.sleep(0.05)
    capsys.readouterr()
    assert main(["status", "--check"]) == 1
    assert "stalled" in capsys.readouterr().err

    from gtx_stream.ops.embedded import free_port

    monkeypatch.setenv("GTX_REDIS__URL", f"redis://127.0.0.1:{free_port()}/0")
    assert main(["status", "--check"]) == 1
    err = capsys.readouterr().err
    assert "unreachable" in err and len(err.strip().splitlines()) == 1


def test_status_shows_failed_requests_and_backoff(
    r: redis.Redis, keys: Keys, redis_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A labeler that failed its requests in a row: how many, and how long it is backed off."""
    register(r, keys, ACC)
    for i in range(3):
        open_frame(r, keys, i, 1, eligible='["a"]')
    cap = Capture()
    agg = make_aggregator(r, keys, cap, max_inflight=1, backoff_after_failures=3,
                          backoff_first_seconds=30)  # fmt: skip
    agg.step(block_ms=1)
    assert len(cap.pending) == 3
    for req in cap.pending:
        post_failure(r, keys, req)
    cap.pending.clear()
    agg.step(block_ms=1)
    st = pipeline_status(r, keys)
    assert st["requests_failed"] == 3
    a, b = st["labelers"]["a"], st["labelers"]["b"]
    assert (a["failed"], a["failures_in_a_row"]) == (3, 3) and 25 < a["backoff_s"] <= 30
    assert (b["failed"], b["failures_in_a_row"], b["backoff_s"]) == (0, 0, 0)

    monkeypatch.setenv("GTX_REDIS__URL", redis_url)
    assert main(["status"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert "failed" in rows["labeler"] and "backoff" in rows["labeler"]
    assert rows["a"].split()[7] == "3" and "(3 failed in a row)" in rows["a"]
    assert rows["b"].split()[7:] == ["0", "-"]
