"""Sources without Redis: crowd datasets and truth files, read through core.datasets (same
checks, same lines), and folders that lose an image or go missing midway."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from gtx_stream.pipeline.ingest.images import ImageError, decode_image, truncation
from gtx_stream.pipeline.ingest.sources import (
    FolderSource,
    SourceError,
    TaskSource,
    read_truth_csv,
)


def _folder(tmp_path: Path, answers: str, truth: str = "task,truth\n10,1\n11,0\n") -> Path:
    (tmp_path / "truth.csv").write_text(truth)
    (tmp_path / "answers.csv").write_text(answers)
    return tmp_path


@pytest.mark.parametrize(
    ("answers", "message"),
    [
        (
            "task,worker,label\n10,w1,1\n10,w1,0\n",
            r"answers.csv:3: worker w1 labeled task 10 twice",
        ),
        ("task,worker,label\n10,w1,1\n12,w2,0\n", r"answers.csv:3: task 12 has no row in"),
        ("task,worker,label\n10,w1,x\n", r"answers.csv:2: label must be 0 or 1"),
        ("task,worker\n10,w1\n", r"answers.csv: expected header task,worker,label"),
    ],
    ids=["duplicate-pair", "task-without-truth", "bad-label", "no-label-column"],
)
def test_a_task_folder_the_replay_refuses_is_refused(
    tmp_path: Path, answers: str, message: str
) -> None:
    source = TaskSource(_folder(tmp_path, answers))
    with pytest.raises(SourceError, match=message) as info:
        source.open()
    assert "\n" not in str(info.value)


def test_a_task_folder_keeps_file_order(tmp_path: Path) -> None:
    source = TaskSource(_folder(tmp_path, "task,worker,label\n11,w2,0\n10,w3,1\n10,w1,1\n"))
    source.open()
    frames = list(source.frames(lambda index, t: True))
    assert [(f.fields["task"], f.fields["truth"], f.fields["eligible"]) for f in frames] == [
        ("10", "1", '["w3", "w1"]'),
        ("11", "0", '["w2"]'),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("frame_index,truth\n0,2\n", r"truth.csv:2: truth must be 0 or 1"),
        ("frame_index,truth\n0,1\n0,0\n", r"truth.csv:3: frame 0 has a second truth row"),
        ("frame_index,truth\nfirst,1\n", r"truth.csv:2: frame_index must be a whole number"),
        ("index,truth\n0,1\n", r"truth.csv: expected header frame_index,truth"),
    ],
)
def test_a_bad_truth_file_is_one_line_naming_the_line(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "truth.csv"
    path.write_text(text)
    with pytest.raises(SourceError, match=message) as info:
        read_truth_csv(path)
    assert "\n" not in str(info.value)


def test_a_truth_file(tmp_path: Path) -> None:
    path = tmp_path / "truth.csv"
    path.write_text("frame_index,truth\n0,1\n\n2, 0\n")
    assert read_truth_csv(path) == {0: 1, 2: 0}


# --- images: refused when cut short ----------------------------------------------------------


def _encoded(ext: str) -> bytes:
    y, x = np.mgrid[0:48, 0:64]
    image = np.dstack([x * 4, y * 5, (x + y) * 2]).astype(np.uint8)
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp"])
def test_a_whole_image_is_not_truncated(ext: str) -> None:
    data = _encoded(ext)
    assert truncation(data) is None
    assert decode_image(data).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("ext", "cut", "reason"),
    [
        (".jpg", 2, "truncated JPEG"),  # only the end-of-image marker lost
        (".jpg", 400, "truncated JPEG"),
        (".png", 12, "truncated PNG"),  # only the IEND chunk lost
        (".png", 500, "truncated PNG"),
        (".webp", 30, "truncated WebP"),
    ],
)
def test_a_cut_short_image_is_refused(ext: str, cut: int, reason: str) -> None:
    data = _encoded(ext)[:-cut]
    assert (truncation(data) or "").startswith(reason)
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_a_thumbnails_end_marker_does_not_pass_for_the_images() -> None:
    """An EXIF thumbnail is a whole JPEG inside an APP1 segment, before the image's scan."""
    thumb = _encoded(".jpg")
    app1 = b"Exif\x00\x00" + thumb
    whole = _encoded(".jpg")
    with_thumb = whole[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + whole[2:]
    assert truncation(with_thumb) is None
    assert truncation(with_thumb[: len(with_thumb) - len(whole) // 2]) is not None


def test_an_empty_or_garbage_file_is_refused() -> None:
    with pytest.raises(ImageError, match="empty file"):
        decode_image(b"")
    with pytest.raises(ImageError, match="cannot decode image"):
        decode_image(b"GIF89a not really")


def test_a_folder_gone_midway_ends_the_source_in_one_error(tmp_path: Path) -> None:
    # it used to warn once for each image left, then end as if the folder had been read
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    src = FolderSource(folder)
    src.open()
    frames = src.frames(lambda index, t: True)
    assert [next(frames).index, next(frames).index] == [0, 1]
    shutil.rmtree(folder)
    with pytest.raises(SourceError, match=r"images is gone after 2 of its 5 images$"):
        next(frames)
    assert src.stats.corrupt == 0


def test_an_image_gone_from_a_folder_that_is_still_there_is_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((24, 32, 3), 40 * i, np.uint8))
    src = FolderSource(folder)
    src.open()
    (folder / "1.png").unlink()
    assert [f.fields["file_name"] for f in src.frames(lambda index, t: True)] == ["0.png", "2.png"]
    assert src.stats.corrupt == 1
