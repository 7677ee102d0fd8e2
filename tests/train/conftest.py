"""A tiny exported dataset folder, in the exporter's format (docs/export.md).

40 frames of 32x32 pixels: class 1 shows a bright disc on a dark, noisy background, class 0
the background alone, so even a linear head on frozen features separates them. Frames whose
index ends in 3 or 7 are in ``val``, the rest in ``train``; one ``missing`` row (no image)
must be skipped. p1 is the label's posterior as the aggregator would write it (0.97 or 0.03,
and 0.6 for every fifth frame, which the pipeline finalised less sure of).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

N_FRAMES = 40
SIZE = 32


def image_of(label: int, i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
    if label:
        cv2.circle(img, (10 + i % 12, 10 + (3 * i) % 12), 7, (230, 240, 250), -1)
    return img


def split_of(i: int) -> str:
    return "val" if i % 10 in (3, 7) else "train"


def write_dataset(root: Path, n: int = N_FRAMES, splits: bool = True) -> Path:
    rows = []
    for i in range(n):
        label = (i // 2) % 2  # pairs of frames: near duplicates share a class
        split = split_of(i) if splits else "train"
        name = ("no", "yes")[label]
        file_name = f"{split}/{name}/cam-{i}.jpg"
        ok, buf = cv2.imencode(".jpg", image_of(label, i))
        assert ok
        data = buf.tobytes()
        (root / split / name).mkdir(parents=True, exist_ok=True)
        (root / file_name).write_bytes(data)
        p1 = (0.6 if label else 0.4) if i % 5 == 0 else (0.97 if label else 0.03)
        rows.append({"file_name": file_name, "image_status": "ok", "image_note": "",
                     "split": split, "class_name": name, "sha256": hashlib.sha256(data).hexdigest(),
                     "bytes": len(data), "frame_id": f"cam-{i}", "source": "video:cam",
                     "frame_index": i, "label": label, "p1": p1,
                     "confidence": max(p1, 1 - p1), "reason": "confident"})  # fmt: skip
    rows.append({"file_name": "", "image_status": "missing", "image_note": "TTL ran out",
                 "split": "train", "class_name": "yes", "sha256": "", "bytes": 0,
                 "frame_id": "cam-gone", "label": 1, "p1": 0.99})  # fmt: skip
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset")


@pytest.fixture(scope="session")
def head_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, model dir): one ``gtx-stream train DATASET --out MODEL --mode head`` run."""
    from gtx_stream.cli import main

    root = tmp_path_factory.mktemp("head")
    dataset = write_dataset(root / "dataset")
    args = ["train", str(dataset), "--out", str(root / "model"), "--image-size", "64", "--quiet"]
    assert main(args) == 0
    return dataset, root / "model"
