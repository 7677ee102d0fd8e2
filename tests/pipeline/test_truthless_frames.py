"""Frames without a truth and simulated labelers, which draw their labels from it.

Refused at ingest when every configured labeler is simulated and nothing gives truths; and a
request for a truthless frame fails at once with a reason (not a lease waited out).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.core.records import LabelEntry
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.label.requests import enqueue_request
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.keys import Keys
from tests.pipeline.test_labeler import labels, put_frame, settings_for

SIM = '[[labelers]]\nid = "sim-{i}"\nbackend = "simulated"\naccuracy = 0.8\n'
MODEL = '[[labelers]]\nid = "model"\nbackend = "python"\ntarget = "tests.labeler_fixtures:bright"\n'


def _config(tmp_path: Path, redis_url: str, *labelers: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[redis]\nurl = "{redis_url}"\n\n' + "\n".join(labelers))
    return path


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "line.avi"
    write_truth_csv(tmp_path / "truth.csv", write_synthetic_video(path, 3, seed=1))
    return path


def test_ingest_refuses_frames_without_truth_for_simulated_labelers_only(
    redis_url: str, r: redis.Redis, tmp_path: Path, video: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path, redis_url, SIM.format(i=1), SIM.format(i=2))
    assert main(["ingest", str(video), "--config", str(config)]) == 2
    out = capsys.readouterr()
    [line] = out.err.strip().splitlines()
    assert line.startswith("gtx-stream ingest: error: the frames would have no truth")
    assert "--truth CSV" in line and "Traceback" not in out.err
    assert r.dbsize() == 0  # nothing opened


@pytest.mark.parametrize("given", ["truth", "a non-simulated labeler", "no labeler"])
def test_ingest_without_truth_goes_on_when_something_can_label(
    redis_url: str, r: redis.Redis, tmp_path: Path, video: Path, given: str
) -> None:
    labelers = {
        "truth": [SIM.format(i=1)],
        "a non-simulated labeler": [SIM.format(i=1), MODEL],
        "no labeler": [],  # the labelers are configured elsewhere: nothing to say
    }[given]
    config = _config(tmp_path, redis_url, *labelers)
    args = ["ingest", str(video), "--config", str(config)]
    if given == "truth":
        args += ["--truth", str(tmp_path / "truth.csv")]
    assert main(args) == 0
    assert r.xlen(Keys("gtx").opened) == 3


def test_a_request_for_a_truthless_frame_fails_at_once_with_the_reason(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    put_frame(r, keys, "cam-7")
    r.hdel(keys.frame("cam-7"), "truth")
    enqueue_request(r, keys, "sim-1", "cam-7", "r7", lease_seconds=30)
    sim = {"id": "sim-1", "backend": "simulated", "accuracy": 0.8}
    assert run_labeler_worker(settings_for(redis_url, sim), ["sim-1"], burst=True) == 0
    [entry] = [LabelEntry.from_fields(e) for e in labels(r, keys)]
    assert entry.failed and entry.request_id == "r7"
    assert "frame cam-7: the frame has no truth" in entry.reason
    assert "ingest --truth CSV" in entry.reason
