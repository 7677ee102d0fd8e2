"""Under ``aggregator.strategy = "uncertainty"`` an open frame holds back one label of budget,
not kappa: every frame of a folder opens at once, with a budget below kappa x frames."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import redis

from gtx_stream.config import Settings
from gtx_stream.ops.synthetic import write_synthetic_video
from gtx_stream.pipeline.ingest.ingester import run_ingest
from gtx_stream.store.keys import Keys


@pytest.mark.redis
@pytest.mark.parametrize(("strategy", "opened"), [("uncertainty", 10), ("threshold", 2)])
def test_the_reserve_per_open_frame(
    r: redis.Redis, keys: Keys, tmp_path: Path, strategy: str, opened: int
) -> None:
    video = tmp_path / "clip.avi"
    write_synthetic_video(video, 10, seed=0)
    settings = Settings(aggregator={"strategy": strategy, "budget": 12, "kappa": 5},
                        labelers=[{"id": "a", "backend": "python", "accuracy": 0.9,
                                   "target": "json:loads"}])  # fmt: skip
    r.hset(keys.budget, "limit", 12)
    stop = threading.Event()
    # nothing labels these frames: under threshold the ingester waits for budget to come back
    timer = threading.Timer(2.0, stop.set)
    timer.start()
    try:
        run_ingest(r, keys, settings, str(video), stop_event=stop)
    finally:
        timer.cancel()
    assert r.zcard(keys.open_frames) == opened
    assert settings.aggregator.reserve_per_frame == (1 if strategy == "uncertainty" else 5)
