"""The stand-in video: deterministic, balanced, correlated in time, its condition visible."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from gtx_stream.config import Settings
from gtx_stream.offline import standin
from gtx_stream.offline.standin import Layout, plan, render, render_all, write_standin_video
from gtx_stream.ops import synthetic
from gtx_stream.pipeline.ingest.ingester import run_ingest
from gtx_stream.pipeline.ingest.sources import read_truth_csv
from gtx_stream.store.keys import Keys

SEED = 5


def auc(scores: np.ndarray, truths: np.ndarray) -> float:
    """P(score of a random 1 > score of a random 0), ties counted half (Mann-Whitney)."""
    pos, neg = scores[truths == 1], scores[truths == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def contact_ratio(frame: np.ndarray, state: standin.FrameState) -> float:
    """The hand-made feature: brightness of the two rows under the rail, over the part's
    middle, relative to the part's own face (so that lighting cancels)."""
    lay = Layout.of((frame.shape[1], frame.shape[0]))
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(float)
    x0 = state.part_x + state.part_w // 4
    x1 = state.part_x + 3 * state.part_w // 4
    contact = gray[lay.rail_bottom : lay.rail_bottom + 2, x0:x1].mean()
    face_y = lay.rail_bottom + state.gap + lay.px(4)
    face = gray[face_y : face_y + 3, x0:x1].mean()
    return float(contact / face)


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_same_seed_same_video_other_seed_other_video(tmp_path: Path) -> None:
    a = write_standin_video(tmp_path / "a.avi", 40, seed=SEED)
    b = write_standin_video(tmp_path / "b.avi", 40, seed=SEED)
    assert a == b
    assert (tmp_path / "a.avi").read_bytes() == (tmp_path / "b.avi").read_bytes()
    first = [f for _, f in render_all(40, SEED)]
    other = [f for _, f in render_all(40, SEED + 1)]
    assert not all(np.array_equal(x, y) for x, y in zip(first, other, strict=True))


def test_a_frame_renders_alone_as_in_the_video() -> None:
    states = plan(30, SEED)
    in_order = [render(s, SEED) for s in states]
    assert np.array_equal(render(states[17], SEED), in_order[17])


def test_truth_csv_has_a_row_per_frame_and_reads_back(tmp_path: Path) -> None:
    truths = write_standin_video(tmp_path / "v.avi", 60, seed=SEED)
    synthetic.write_truth_csv(tmp_path / "t.csv", truths)
    assert read_truth_csv(tmp_path / "t.csv") == dict(enumerate(truths))
    frames = read_frames(tmp_path / "v.avi")
    assert len(frames) == len(truths) == 60
    assert frames[0].shape == (240, 320, 3)


def test_same_codec_as_the_synthetic_video() -> None:
    assert standin.FOURCC == synthetic.FOURCC


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_classes_balance_and_truth_changes_in_runs_of_cycles(seed: int) -> None:
    states = plan(standin.DEFAULT_FRAMES, seed)
    truths = np.array([s.truth for s in states])
    assert standin.BALANCE[0] <= truths.mean() <= standin.BALANCE[1]
    changes = np.flatnonzero(np.diff(truths)) + 1
    cycle_starts = {s.index for s in states[1:] if s.cycle != states[s.index - 1].cycle}
    assert set(changes) <= cycle_starts  # constant within a cycle
    assert 5 <= len(changes) < len(cycle_starts)  # runs, neither fixed nor alternating
    assert 25 <= states[-1].cycle + 1 <= 35  # ~30 operations, as in a video of the paper's size


def test_consecutive_frames_are_more_alike_than_frames_far_apart() -> None:
    frames = [f.astype(np.float32).ravel() for _, f in render_all(60, SEED)]

    def corr(lag: int) -> float:
        return float(np.mean([np.corrcoef(frames[i], frames[i + lag])[0, 1]
                              for i in range(len(frames) - lag)]))  # fmt: skip

    near, far = corr(1), corr(30)
    assert near > 0.8
    assert near - far > 0.1, (near, far)


def test_contact_feature_separates_the_classes_and_brightness_does_not() -> None:
    states = plan(300, SEED)
    truths = np.array([s.truth for s in states])
    clean = np.array([contact_ratio(render(s, SEED, clean=True), s) for s in states])
    assert auc(clean, truths) == 1.0  # noise-free: perfectly separable
    frames = [render(s, SEED) for s in states]
    noisy = np.array([contact_ratio(f, s) for f, s in zip(frames, states, strict=True)])
    assert auc(noisy, truths) > 0.9  # with every nuisance, still plainly visible
    brightness = np.array([f.mean() for f in frames])
    assert 0.3 < auc(brightness, truths) < 0.7  # a global statistic does not tell


def test_strip_shows_both_classes(tmp_path: Path) -> None:
    truths = write_standin_video(tmp_path / "v.avi", 80, seed=SEED, strip=tmp_path / "s.png")
    strip = cv2.imread(str(tmp_path / "s.png"))
    assert strip is not None
    per_class = {t: min(4, truths.count(t)) for t in (0, 1)}
    rows = -(-sum(per_class.values()) // 4)
    assert strip.shape[0] == rows * (240 + 22)


def test_cli_writes_video_truth_and_strip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gtx_stream.cli import stand_in

    parser = argparse.ArgumentParser()
    stand_in.register(parser.add_subparsers())
    video, csv, png = tmp_path / "v.avi", tmp_path / "t.csv", tmp_path / "s.png"
    argv = ["stand-in", str(video), "--truth", str(csv), "--frames", "30", "--seed", "2"]
    args = parser.parse_args([*argv, "--strip", str(png)])
    assert args.func(args) == 0
    assert "wrote 30 frames" in capsys.readouterr().out
    assert len(read_truth_csv(csv)) == 30 and png.is_file()
    assert len(read_frames(video)) == 30


def test_ingester_reads_the_video_with_its_truth(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    truths = write_standin_video(tmp_path / "v.avi", 24, seed=SEED)
    synthetic.write_truth_csv(tmp_path / "t.csv", truths)
    report = run_ingest(r, keys, Settings(), str(tmp_path / "v.avi"), truth_csv=tmp_path / "t.csv")
    assert (report.read, report.opened, report.stopped) == (24, 24, "end")
    entries: Any = r.xrange(keys.opened)
    ids = [fields["frame_id"] for _, fields in entries]
    assert [r.hget(keys.frame(i), "truth") for i in ids] == [str(t) for t in truths]
