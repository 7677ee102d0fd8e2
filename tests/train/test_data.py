"""Reading an exported folder for training (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from gtx_stream.train.data import (
    MEAN_RGB,
    STD_RGB,
    DatasetError,
    load_images,
    preprocess,
    read_dataset,
    targets,
)
from tests.train.conftest import N_FRAMES


def test_the_ok_rows_are_read_by_split_with_class_names(tiny_dataset: Path) -> None:
    ds = read_dataset(tiny_dataset)
    assert ds.class_names == ("no", "yes")
    assert len(ds.split("train")) + len(ds.split("val")) == N_FRAMES  # the missing row is skipped
    assert len(ds.split("val")) == 8
    assert ds.split("test") == []
    first = ds.split("train")[0]
    assert first.path == tiny_dataset / "train/no/cam-0.jpg"
    assert (first.label, first.p1) == (0, 0.4)


def test_hard_and_soft_targets(tiny_dataset: Path) -> None:
    train = read_dataset(tiny_dataset).split("train")[:3]  # frames 0, 1, 2
    assert targets(train, soft=False).tolist() == [0.0, 0.0, 1.0]
    assert targets(train, soft=True).tolist() == pytest.approx([0.4, 0.03, 0.97])


def test_preprocess_is_normalised_rgb_chw() -> None:
    bgr = np.zeros((10, 20, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in OpenCV's BGR order
    x = preprocess(bgr, 8)
    assert x.shape == (3, 8, 8) and x.dtype == np.float32
    assert x[0, 0, 0] == pytest.approx((1.0 - MEAN_RGB[0]) / STD_RGB[0])
    assert x[1, 0, 0] == pytest.approx((0.0 - MEAN_RGB[1]) / STD_RGB[1])
    assert preprocess(np.zeros((5, 5), np.uint8), 4).shape == (3, 4, 4)  # grey is fine


def test_load_images_stacks_the_split(tiny_dataset: Path) -> None:
    val = read_dataset(tiny_dataset).split("val")
    batch = load_images(val, 16)
    assert batch.shape == (len(val), 3, 16, 16)
    image = cv2.imread(str(val[0].path))
    assert np.allclose(batch[0], preprocess(image, 16))


def test_a_folder_without_manifest_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no manifest.jsonl"):
        read_dataset(tmp_path)


def test_a_row_whose_image_is_gone_is_an_error(tiny_dataset: Path) -> None:
    (tiny_dataset / "train/no/cam-0.jpg").unlink()
    with pytest.raises(
        DatasetError, match=r"manifest.jsonl:1: image train/no/cam-0.jpg is missing"
    ):
        read_dataset(tiny_dataset)


def test_a_bad_label_is_an_error(tiny_dataset: Path) -> None:
    path = tiny_dataset / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["label"] = 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match=r":3: label must be 0 or 1"):
        read_dataset(tiny_dataset)


def test_the_rows_are_counted_by_status(tiny_dataset: Path) -> None:
    ds = read_dataset(tiny_dataset)
    assert ds.statuses == {"ok": N_FRAMES, "missing": 1}
    assert ds.rows() == f"{N_FRAMES + 1} rows in manifest.jsonl: 1 missing, {N_FRAMES} ok"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("nowhere", "nowhere: no such folder"),
        ("exported/.lock", "exported/.lock: not a folder"),
        ("dataset/train", "dataset/train: no manifest.jsonl; give the dataset folder above it"),
        ("exported", "exported: no manifest.jsonl: gtx-stream export has exported no frame"),
    ],
    ids=["missing", "a-file", "a-split-folder", "an-export-of-no-frame"],
)
def test_a_folder_without_manifest_says_what_the_user_gave(
    given: str, message: str, tiny_dataset: Path
) -> None:
    root = tiny_dataset.parent
    (root / "exported").mkdir()
    (root / "exported" / ".lock").touch()  # what gtx-stream export leaves when no frame is final
    with pytest.raises(DatasetError) as err:
        read_dataset(root / given)
    assert str(err.value).startswith(f"{root / given}: ") and message in str(err.value)
