"""Several sources in one pipeline: each its own bound on open frames
(``ingest.max_open_per_source``), and figures per source in status and the dashboard."""

from __future__ import annotations

import pytest
import redis

from gtx_stream.ops.metrics import dashboard, sources
from gtx_stream.ops.status import pipeline_status
from gtx_stream.pipeline.ingest.ingester import open_frame
from gtx_stream.server.admin_view import fragments
from gtx_stream.store.keys import Keys, source_of
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    register,
    run_until_idle,
)


def _open(r: redis.Redis, keys: Keys, source: str, index: int, per_source: int,
          max_open: int = 64) -> str:  # fmt: skip
    return open_frame(r, keys, source=f"cam://{source}", source_id=source, frame_index=index,
                      jpeg=b"jpeg", ttl=600, max_open_frames=max_open, reserve_per_frame=0,
                      fields={"truth": str(index % 2)},
                      max_open_per_source=per_source)  # fmt: skip


@pytest.mark.redis
def test_a_source_at_its_bound_does_not_take_the_others_share(r: redis.Redis, keys: Keys) -> None:
    # the bursting source fills its own bound and no more
    assert [_open(r, keys, "burst", i, per_source=3) for i in range(5)] == (
        ["opened"] * 3 + ["full"] * 2
    )
    # the steady ones still open, up to their own bounds
    assert [_open(r, keys, "steady", i, per_source=3) for i in range(3)] == ["opened"] * 3
    assert r.zcard(keys.open_frames) == 6
    # without bounds of their own, the burst would have taken every slot of max_open_frames
    assert [_open(r, keys, "b2", i, per_source=0, max_open=8) for i in range(3)] == [
        "opened", "opened", "full",
    ]  # fmt: skip


@pytest.mark.redis
def test_frames_that_left_the_open_set_free_their_source_s_slots(
    r: redis.Redis, keys: Keys
) -> None:
    for i in range(3):
        assert _open(r, keys, "cam", i, per_source=3) == "opened"
    assert _open(r, keys, "cam", 3, per_source=3) == "full"
    # finalise.lua and drop_frame.lua take a frame out of the open set only; open_frame.lua
    # prunes the source's set when the bound is reached
    r.zrem(keys.open_frames, "cam-0", "cam-1")
    assert _open(r, keys, "cam", 3, per_source=3) == "opened"
    assert sorted(r.zrange(keys.source_open("cam"), 0, -1)) == ["cam-2", "cam-3"]
    assert _open(r, keys, "cam", 4, per_source=3) == "opened"
    assert _open(r, keys, "cam", 5, per_source=3) == "full"


@pytest.mark.redis
def test_status_and_dashboard_show_figures_per_source(r: redis.Redis, keys: Keys) -> None:
    acc = {"a": 0.95, "b": 0.9, "c": 0.85}
    register(r, keys, acc)
    for i in range(4):
        _open(r, keys, "line1", i, per_source=0)
    for i in range(2):
        _open(r, keys, "line-2", i, per_source=0)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.9, kappa=3, budget_per_source=100)
    run_until_idle(agg, r, keys, cap, acc)
    _open(r, keys, "line1", 4, per_source=0)  # one left open
    spent = {"line1": 0, "line-2": 0}  # with shares of the budget, each source's spend
    for f in final_records(r, keys):
        spent[source_of(f["frame_id"])] += int(f["n_labels"])
    assert spent["line1"] > 0 and spent["line-2"] > 0
    want = [
        {"source": "line-2", "open": 0, "opened": 2, "finalised": 2, "spent": spent["line-2"]},
        {"source": "line1", "open": 1, "opened": 5, "finalised": 4, "spent": spent["line1"]},
    ]
    assert sources(r, keys) == want
    assert pipeline_status(r, keys)["sources"] == want
    # the dashboard's Sources table
    html = fragments(dashboard(r, keys))["sources"]
    row = f"<td>line1</td><td>1</td><td>5</td><td>4</td><td>{spent['line1']}</td></tr>"
    assert row in html
