from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from gtx_stream.ops.synthetic import region_of, write_synthetic_video, write_truth_csv


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def square_inside(frame: np.ndarray, size: tuple[int, int]) -> int:
    """1 when the bright square's centre lies inside the marked region."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    ys, xs = np.nonzero(gray > 200)
    cx, cy = xs.mean(), ys.mean()
    x0, y0, x1, y1 = region_of(size)
    return int(x0 < cx < x1 and y0 < cy < y1)


def test_video_reads_back_with_every_frame_and_its_truth(tmp_path: Path) -> None:
    path = tmp_path / "synthetic.avi"
    truths = write_synthetic_video(path, n_frames=24, seed=3, size=(64, 48))
    frames = read_frames(path)
    assert len(frames) == 24
    assert frames[0].shape == (48, 64, 3)
    assert [square_inside(f, (64, 48)) for f in frames] == truths
    assert 0 < sum(truths) < 24


def test_same_seed_same_truths_other_seed_other_truths(tmp_path: Path) -> None:
    a = write_synthetic_video(tmp_path / "a.avi", 30, seed=1, size=(64, 48))
    b = write_synthetic_video(tmp_path / "b.avi", 30, seed=1, size=(64, 48))
    c = write_synthetic_video(tmp_path / "c.avi", 30, seed=2, size=(64, 48))
    assert a == b
    assert a != c


def test_truth_csv(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    write_truth_csv(path, [1, 0, 1])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [
        {"frame_index": "0", "truth": "1"},
        {"frame_index": "1", "truth": "0"},
        {"frame_index": "2", "truth": "1"},
    ]


def test_rejects_empty_video(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_synthetic_video(tmp_path / "x.avi", 0, seed=0)
