from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from gtx_stream.config import AggregatorSettings, IngestSettings, Settings
from gtx_stream.core.records import FinalRecord
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.ingest.ingester import (
    IngestReport,
    Sampler,
    SourceError,
    open_frame,
    run_ingest,
)
from gtx_stream.pipeline.ingest.sources import source_id_of
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import load_script
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    register,
    run_until_idle,
)
from tests.mjpeg_server import MjpegServer, frame_of_level

SIZE = (64, 48)


def make_settings(max_open_frames: int = 64, **ingest: object) -> Settings:
    return Settings(
        ingest=IngestSettings(**ingest),  # type: ignore[arg-type]
        aggregator=AggregatorSettings(max_open_frames=max_open_frames),
    )


def write_video(path: Path, levels: list[int], fps: float = 10) -> Path:
    """A video whose frame i is flat grey at ``levels[i]``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE)
    assert writer.isOpened()
    for level in levels:
        writer.write(np.full((SIZE[1], SIZE[0], 3), level, np.uint8))
    writer.release()
    return path


def wait_until(cond: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def opened_ids(r: redis.Redis, keys: Keys) -> list[str]:
    entries: Any = r.xrange(keys.opened)
    return [fields["frame_id"] for _, fields in entries]


def decode(jpeg: object, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
    assert isinstance(jpeg, bytes) and jpeg[:2] == b"\xff\xd8"
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    assert image is not None
    return image


def opened_indices(r: redis.Redis, keys: Keys) -> list[int]:
    return [int(i.rsplit("-", 1)[1]) for i in opened_ids(r, keys)]


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A client without response decoding, to read JPEG bytes."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def video(tmp_path: Path) -> tuple[Path, list[int]]:
    path = tmp_path / "clip.avi"
    truths = write_synthetic_video(path, n_frames=12, seed=7, size=SIZE)
    return path, truths


class Runner:
    """run_ingest in a thread, for tests that change Redis while it runs."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.stop = threading.Event()
        self.report: IngestReport | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.report = run_ingest(*args, stop_event=self.stop, **kwargs)  # type: ignore[arg-type]
            except BaseException as err:  # reported by join()
                self.error = err

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 60.0) -> IngestReport:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "ingester did not stop"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


# --- a video file, every frame ---------------------------------------------------------------


def test_video_opens_every_frame_with_fields_and_jpeg(
    r: redis.Redis, raw: redis.Redis, keys: Keys, video: tuple[Path, list[int]], tmp_path: Path
) -> None:
    path, truths = video
    truth_csv = tmp_path / "truth.csv"
    write_truth_csv(truth_csv, truths)
    before = time.time()
    report = run_ingest(raw, keys, make_settings(frame_ttl=600), str(path), truth_csv=truth_csv)

    assert (report.read, report.opened, report.skipped, report.duplicates) == (12, 12, 0, 0)
    assert report.stopped == "end" and not report.truncated
    sid = source_id_of(str(path.resolve()))
    assert report.source_id == sid
    ids = [f"{sid}-{i}" for i in range(12)]
    assert opened_ids(r, keys) == ids
    assert sorted(r.zrange(keys.open_frames, 0, -1)) == sorted(ids)
    assert r.hgetall(keys.source(sid)) == {"last_index": "11", "uri": str(path.resolve())}
    assert r.hget(keys.stats, "frames_opened") == "12"
    for i, frame_id in enumerate(ids):
        h = r.hgetall(keys.frame(frame_id))
        opened_at = float(h.pop("opened_at"))
        assert before <= opened_at <= time.time()
        assert r.zscore(keys.open_frames, frame_id) == pytest.approx(opened_at)
        assert h == {
            "state": "open",
            "source": str(path.resolve()),
            "source_id": sid,
            "frame_index": str(i),
            "n_labels": "0",
            "truth": str(truths[i]),
        }
        assert 0 < r.ttl(keys.frame(frame_id)) <= 600
        assert 0 < r.ttl(keys.image(frame_id)) <= 600
        image = decode(raw.get(keys.image(frame_id)))
        assert image.shape == (SIZE[1], SIZE[0], 3)


def test_decoding_client_works_too(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    report = run_ingest(r, keys, make_settings(), str(video[0]))
    assert report.opened == 12


# --- sampling --------------------------------------------------------------------------------


def test_every_keeps_every_nth_frame(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    report = run_ingest(r, keys, make_settings(every=3), str(video[0]))
    assert opened_indices(r, keys) == [0, 3, 6, 9]
    assert (report.read, report.opened, report.skipped) == (12, 4, 8)


def test_max_frames_stops_early(r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]) -> None:
    report = run_ingest(r, keys, make_settings(max_frames=5, every=2), str(video[0]))
    assert opened_indices(r, keys) == [0, 2, 4, 6, 8]
    assert report.stopped == "max_frames"


def test_fps_samples_by_source_time(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.avi", [10 * i for i in range(12)], fps=10)
    report = run_ingest(r, keys, make_settings(fps=2.5), str(path))
    assert opened_indices(r, keys) == [0, 4, 8]
    assert report.skipped == 9


def test_fps_above_source_rate_keeps_every_frame(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    report = run_ingest(r, keys, make_settings(fps=50), str(video[0]))
    assert report.opened == 12


@pytest.mark.parametrize(
    ("every", "fps", "times", "kept"),
    [
        (1, 10.0, [i / 30 for i in range(10)], [0, 3, 6, 9]),
        (1, 0.0, [0.0] * 5, [0, 1, 2, 3, 4]),
        (2, 0.0, [0.0] * 5, [0, 2, 4]),
        (1, 2.0, [0.0, 0.3, 0.6, 1.5, 1.6, 3.0], [0, 2, 3, 5]),
    ],
    ids=["30fps-to-10", "all", "every-2", "irregular-times"],
)
def test_sampler(every: int, fps: float, times: list[float], kept: list[int]) -> None:
    sampler = Sampler(every, fps)
    assert [i for i, t in enumerate(times) if sampler.wants(i, t)] == kept


def test_skip_still_compares_with_last_kept_frame(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    # 100, 101 (still), 102 (still against 100), 160, 160, 60
    path = write_video(tmp_path / "v.avi", [100, 101, 102, 160, 160, 60])
    report = run_ingest(r, keys, make_settings(skip_still=True, still_threshold=5), str(path))
    assert opened_indices(r, keys) == [0, 3, 5]
    assert report.skipped == 3


def test_skip_still_off_keeps_still_frames(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.avi", [100, 100, 100])
    assert run_ingest(r, keys, make_settings(), str(path)).opened == 3


# --- restarts never open a frame twice -------------------------------------------------------


def test_second_run_on_same_file_opens_nothing(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    first = run_ingest(r, keys, make_settings(), str(video[0]))
    second = run_ingest(r, keys, make_settings(), str(video[0]))
    assert (first.opened, second.opened, second.duplicates) == (12, 0, 12)
    assert r.xlen(keys.opened) == 12
    assert r.hget(keys.stats, "frames_opened") == "12"


def test_interrupted_run_resumes_after_last_opened_frame(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    run_ingest(r, keys, make_settings(max_frames=5), str(video[0]))
    resumed = run_ingest(r, keys, make_settings(), str(video[0]))
    assert (resumed.duplicates, resumed.opened) == (5, 7)
    assert opened_indices(r, keys) == list(range(12))


def test_relative_and_absolute_paths_are_one_source(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = video[0]
    run_ingest(r, keys, make_settings(), str(path))
    monkeypatch.chdir(path.parent)
    assert run_ingest(r, keys, make_settings(), path.name).opened == 0


def open_one(r: redis.Redis, keys: Keys, index: int, max_open_frames: int = 64) -> str:
    return open_frame(
        r,
        keys,
        source="/videos/a.avi",
        source_id="src",
        frame_index=index,
        jpeg=b"\xff\xd8jpeg",
        ttl=60,
        max_open_frames=max_open_frames,
    )


def test_script_refuses_index_at_or_below_high_water_mark(r: redis.Redis, keys: Keys) -> None:
    assert open_one(r, keys, 5) == "opened"
    assert open_one(r, keys, 5) == "duplicate"
    assert open_one(r, keys, 3) == "duplicate"
    assert open_one(r, keys, 6) == "opened"
    # the frame itself still exists: refused even if the high-water mark is lost
    r.delete(keys.source("src"))
    assert open_one(r, keys, 6) == "duplicate"
    assert r.xlen(keys.opened) == 2
    assert r.hget(keys.stats, "frames_opened") == "2"


def test_load_script_is_cached_per_client_and_survives_script_flush(
    r: redis.Redis, redis_url: str, keys: Keys
) -> None:
    script = load_script(r, "open_frame")
    assert load_script(r, "open_frame.lua") is script
    other = redis.Redis.from_url(redis_url)
    try:
        assert load_script(other, "open_frame") is not script
    finally:
        other.close()
    r.script_flush()
    assert open_one(r, keys, 0) == "opened"
    with pytest.raises(FileNotFoundError):
        load_script(r, "no_such_script")


# --- backpressure and budget -----------------------------------------------------------------


def test_script_refuses_when_full_and_writes_nothing(r: redis.Redis, keys: Keys) -> None:
    assert open_one(r, keys, 0, max_open_frames=1) == "opened"
    assert open_one(r, keys, 1, max_open_frames=1) == "full"
    assert not r.exists(keys.frame("src-1"), keys.image("src-1"))
    assert r.hget(keys.source("src"), "last_index") == "0"
    r.zrem(keys.open_frames, "src-0")
    assert open_one(r, keys, 1, max_open_frames=1) == "opened"


def test_backpressure_holds_at_max_open_frames(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    runner = Runner(r, keys, make_settings(max_open_frames=3), str(video[0]))
    frames_opened = lambda: int(r.hget(keys.stats, "frames_opened") or 0)  # noqa: E731
    wait_until(lambda: frames_opened() == 3)
    time.sleep(0.3)  # room to overrun, if backpressure were broken
    assert frames_opened() == 3 and runner.thread.is_alive()

    r.zrem(keys.open_frames, opened_ids(r, keys)[0])
    wait_until(lambda: frames_opened() == 4)
    time.sleep(0.3)
    assert frames_opened() == 4 and r.zcard(keys.open_frames) == 3

    while runner.thread.is_alive():  # finalise everything, as an aggregator would
        r.delete(keys.open_frames)
        time.sleep(0.01)
    report = runner.join()
    assert report.opened == 12 and opened_indices(r, keys) == list(range(12))


def test_spent_budget_opens_nothing(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    r.hset(keys.budget, mapping={"limit": 10, "spent": 10})
    report = run_ingest(r, keys, make_settings(), str(video[0]))
    assert (report.opened, report.stopped) == (0, "budget")
    assert r.xlen(keys.opened) == 0


def test_budget_with_room_opens_and_missing_budget_is_unlimited(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]], tmp_path: Path
) -> None:
    # room for kappa (5) more labels on each of the 12 frames: the reserve never holds one back
    r.hset(keys.budget, mapping={"limit": 100, "spent": 9})
    assert run_ingest(r, keys, make_settings(), str(video[0])).opened == 12
    r.delete(keys.budget)
    other = write_video(tmp_path / "other.avi", [50, 90, 130])
    assert run_ingest(r, keys, make_settings(), str(other)).opened == 3


def test_budget_spent_while_waiting_stops_the_ingester(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]
) -> None:
    r.hset(keys.budget, mapping={"limit": 100, "spent": 0})
    runner = Runner(r, keys, make_settings(max_open_frames=2), str(video[0]))
    wait_until(lambda: r.zcard(keys.open_frames) == 2)
    r.hset(keys.budget, "spent", 100)
    r.delete(keys.open_frames)
    report = runner.join()
    assert (report.opened, report.stopped) == (2, "budget")


# --- folders and crowd datasets --------------------------------------------------------------


def _image_folder(folder: Path, levels: dict[str, int]) -> Path:
    folder.mkdir()
    for name, level in levels.items():
        cv2.imwrite(str(folder / name), np.full((SIZE[1], SIZE[0], 3), level, np.uint8))
    return folder


def test_folder_skips_a_corrupt_image_without_giving_it_an_index(
    r: redis.Redis, raw: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    folder = _image_folder(tmp_path / "images", {"a.png": 40, "b.jpg": 80, "d.png": 160})
    (folder / "c.jpg").write_bytes(b"\xff\xd8 this is no JPEG")
    (folder / "notes.txt").write_text("not an image")
    report = run_ingest(raw, keys, make_settings(), str(folder))
    assert (report.read, report.opened, report.corrupt) == (4, 3, 1)
    sid = source_id_of(str(folder.resolve()))
    assert opened_ids(r, keys) == [f"{sid}-0", f"{sid}-1", f"{sid}-2"]
    names = [r.hget(keys.frame(f"{sid}-{i}"), "file_name") for i in range(3)]
    assert names == ["a.png", "b.jpg", "d.png"]
    level = decode(raw.get(keys.image(f"{sid}-2")), cv2.IMREAD_GRAYSCALE).mean()
    assert level == pytest.approx(160, abs=2)


def test_folder_refuses_truncated_images_with_a_warning(
    r: redis.Redis, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = _image_folder(tmp_path / "images", {"a.png": 40, "c.jpg": 90, "e.png": 200})
    ok, jpeg = cv2.imencode(
        ".jpg", np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    )
    assert ok
    (folder / "b.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) * 2 // 3])
    # why the check exists: OpenCV reads this JPEG, grey where its tail is missing
    assert cv2.imread(str(folder / "b.jpg")) is not None
    png = (folder / "a.png").read_bytes()
    (folder / "d.png").write_bytes(png[:-12])  # without its IEND chunk
    report = run_ingest(r, keys, make_settings(), str(folder))
    assert (report.read, report.opened, report.corrupt) == (5, 3, 2)
    sid = source_id_of(str(folder.resolve()))
    names = [r.hget(keys.frame(f"{sid}-{i}"), "file_name") for i in range(3)]
    assert names == ["a.png", "c.jpg", "e.png"]
    assert "b.jpg: truncated JPEG" in caplog.text
    assert "d.png: truncated PNG" in caplog.text


def test_a_folder_gives_the_same_indices_on_every_run(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """Restarts rely on it (the high-water mark): the corrupt file takes no index, the sampler
    counts usable images, and a second run opens nothing."""
    levels = {f"{i:02d}.png": 20 * i for i in range(7)}
    folder = _image_folder(tmp_path / "images", levels)
    (folder / "03b.jpg").write_bytes(b"garbage")
    first = run_ingest(r, keys, make_settings(every=2, max_frames=2), str(folder))
    second = run_ingest(r, keys, make_settings(every=2), str(folder))
    assert (first.opened, second.duplicates, second.opened) == (2, 2, 2)
    sid = source_id_of(str(folder.resolve()))
    assert opened_indices(r, keys) == [0, 2, 4, 6]
    names = [r.hget(keys.frame(f"{sid}-{i}"), "file_name") for i in (0, 2, 4, 6)]
    assert names == ["00.png", "02.png", "04.png", "06.png"]


def test_a_folder_frames_file_name_reaches_its_final_record(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    folder = _image_folder(tmp_path / "images", {"x.png": 10, "y.jpg": 60, "z.png": 110})
    truth_csv = tmp_path / "truth.csv"
    write_truth_csv(truth_csv, [1, 0, 1])
    run_ingest(r, keys, make_settings(), str(folder), truth_csv=truth_csv)
    accuracies = {"a": 0.9, "b": 0.8, "c": 0.7}
    register(r, keys, accuracies)
    capture = Capture()
    agg = make_aggregator(r, keys, capture)
    run_until_idle(agg, r, keys, capture, accuracies)
    records = [FinalRecord.from_fields(f) for f in final_records(r, keys)]
    assert sorted((rec.frame_index, rec.file_name) for rec in records) == [
        (0, "x.png"), (1, "y.jpg"), (2, "z.png"),
    ]  # fmt: skip


def test_tasks_open_one_frame_per_task(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "truth.csv").write_text("task,truth\n10,1\n11,0\n12,1\n")
    (tmp_path / "answers.csv").write_text(
        "task,worker,label\n10,w1,1\n10,w2,0\n11,w2,0\n12,w3,1\n12,w1,1\n"
    )
    report = run_ingest(r, keys, make_settings(), tasks_dir=tmp_path)
    assert report.opened == 3
    sid = source_id_of(f"tasks:{tmp_path.resolve()}")
    frames = [r.hgetall(keys.frame(f"{sid}-{i}")) for i in range(3)]
    assert [(f["task"], f["truth"], json.loads(f["eligible"])) for f in frames] == [
        ("10", "1", ["w1", "w2"]),
        ("11", "0", ["w2"]),
        ("12", "1", ["w3", "w1"]),
    ]
    assert all(r.exists(keys.image(f"{sid}-{i}")) for i in range(3))
    assert run_ingest(r, keys, make_settings(), tasks_dir=tmp_path).duplicates == 3


def test_tasks_of_a_real_dataset(r: redis.Redis, keys: Keys, datasets: Path) -> None:
    report = run_ingest(r, keys, make_settings(max_frames=20), tasks_dir=datasets / "possent")
    assert report.opened == 20
    sid = report.source_id
    eligible = json.loads(r.hget(keys.frame(f"{sid}-0"), "eligible") or "[]")
    assert len(eligible) == 20  # possent: 20 labels per task


# --- bad input: clear errors, no crash -------------------------------------------------------


@pytest.mark.parametrize(
    ("make_source", "message"),
    [
        (lambda tmp: str(tmp / "missing.avi"), "no such file"),
        (lambda tmp: str(_write(tmp / "notes.avi", b"plain text, not a video\n" * 40)), "cannot"),
        (lambda tmp: str(_mkdir(tmp / "empty")), "no images"),
        (lambda tmp: "99", "cannot open camera 99"),
        (lambda tmp: "http://127.0.0.1:9/stream.mjpg", "cannot open http://127.0.0.1:9"),
    ],
    ids=["missing-file", "not-a-video", "empty-folder", "camera-99", "refused-url"],
)
def test_unreadable_source_is_a_clear_error(
    r: redis.Redis,
    keys: Keys,
    tmp_path: Path,
    make_source: Callable[[Path], str],
    message: str,
) -> None:
    with pytest.raises(SourceError, match=message) as info:
        run_ingest(r, keys, make_settings(), make_source(tmp_path))
    assert "\n" not in str(info.value)
    assert r.dbsize() == 0


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_truncated_video_ends_with_what_could_be_read(
    r: redis.Redis, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    full = tmp_path / "full.avi"
    write_synthetic_video(full, n_frames=40, seed=1, size=SIZE)
    data = full.read_bytes()
    cut = _write(tmp_path / "cut.avi", data[: int(len(data) * 0.6)])
    report = run_ingest(r, keys, make_settings(), str(cut))
    assert report.truncated
    assert 0 < report.opened < 40
    assert opened_indices(r, keys) == list(range(report.opened))
    assert "truncated" in caplog.text


def test_bad_truth_file_is_a_clear_error(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]], tmp_path: Path
) -> None:
    bad = _write(tmp_path / "truth.csv", b"frame_index,truth\n0,2\n")
    with pytest.raises(SourceError, match="truth must be 0 or 1"):
        run_ingest(r, keys, make_settings(), str(video[0]), truth_csv=bad)


def test_frames_missing_from_the_truth_file_are_warned_of_once_and_counted(
    r: redis.Redis, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "500,0" for "5,0": frame 5 was opened without truth, and only the labelers' logs told
    video = tmp_path / "clip.avi"
    truths = write_synthetic_video(video, n_frames=8, seed=3, size=SIZE)
    rows = [(i, t) for i, t in enumerate(truths) if i not in (5, 6)] + [(500, 0)]
    text = "frame_index,truth\n" + "".join(f"{i},{t}\n" for i, t in rows)
    csv = _write(tmp_path / "truth.csv", text.encode())
    report = run_ingest(r, keys, make_settings(), str(video), truth_csv=csv)
    assert (report.opened, report.no_truth) == (8, 2)
    assert report.summary().endswith("duplicates refused 0, without truth 2; stopped: end")
    warned = [m for m in caplog.messages if "no row in the truth file" in m]
    assert warned == [
        f"{video}: frame 5 has no row in the truth file: opened without truth "
        "(a simulated labeler cannot label it); the summary counts such frames"
    ]
    assert "truth" not in r.hgetall(keys.frame(f"{source_id_of(str(video))}-5"))


def test_without_a_truth_file_no_frame_is_warned_of(
    r: redis.Redis, keys: Keys, video: tuple[Path, list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    report = run_ingest(r, keys, make_settings(), str(video[0]))
    assert report.opened > 0 and report.no_truth == 0
    assert "without truth" not in report.summary() and "truth file" not in caplog.text


# --- live sources: an MJPEG stream over HTTP -------------------------------------------------


@pytest.mark.slow
def test_mjpeg_stream_dropped_mid_stream_is_reopened(
    r: redis.Redis, raw: redis.Redis, keys: Keys
) -> None:
    with MjpegServer(n_frames=30, drop_after=10) as camera:
        settings = make_settings(max_frames=20, reconnect_max_seconds=0.5)
        runner = Runner(raw, keys, settings, camera.url)
        watchdog = threading.Timer(60, runner.stop.set)
        watchdog.start()
        report = runner.join(90)
        watchdog.cancel()

        assert report.stopped == "max_frames"
        assert report.reconnects >= 1 and camera.connections >= 2
        assert report.opened == 20
        ids = opened_ids(r, keys)
        assert len(ids) == len(set(ids)) == 20
        assert opened_indices(r, keys) == list(range(20))

        def camera_frame(frame_id: str) -> int:
            gray = decode(raw.get(keys.image(frame_id)), cv2.IMREAD_GRAYSCALE)
            return frame_of_level(float(gray.mean()))

        # each camera frame opened at most once, in order, some after the drop
        seen = [camera_frame(i) for i in ids]
        assert seen == sorted(set(seen)) and seen[-1] >= 10

        # a restarted ingester carries on above the high-water mark
        again = run_ingest(raw, keys, make_settings(max_frames=5), camera.url)
        assert again.opened == 5
        assert opened_indices(r, keys) == list(range(25))
        assert camera_frame(opened_ids(r, keys)[-1]) > seen[-1]


@pytest.mark.slow
def test_stream_that_stays_down_retries_until_stopped(r: redis.Redis, keys: Keys) -> None:
    with MjpegServer(n_frames=5, drop_after=100) as camera:
        runner = Runner(r, keys, make_settings(reconnect_max_seconds=0.2), camera.url)
        wait_until(lambda: r.xlen(keys.opened) == 5)
        camera.done.wait(10)
        time.sleep(0.5)  # a few refused reconnects
        assert runner.thread.is_alive()
        runner.stop.set()
        report = runner.join()
    assert (report.opened, report.stopped, report.reconnects) == (5, "stop", 0)


# --- the command -----------------------------------------------------------------------------


def gtx(args: list[str], redis_url: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    environ = {**os.environ, "GTX_REDIS__URL": redis_url, **env}
    return subprocess.Popen(
        [sys.executable, "-m", "gtx_stream", "ingest", *args],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_command_prints_a_summary(
    redis_url: str, video: tuple[Path, list[int]], tmp_path: Path
) -> None:
    proc = gtx([str(video[0]), "--every", "2"], redis_url, tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.strip().splitlines() == [
        f"ingest {video[0].resolve()}: read 12, opened 6, skipped 6, duplicates refused 0; "
        "stopped: end"
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        # a missing file fails again after a restart (2: not restarted); a camera that is not
        # there yet may be there then (1: restarted)
        (["missing.avi"], {}, 2, "no such file"),
        (["99"], {}, 1, "cannot open camera 99"),
        (["http://127.0.0.1:9/cam.mjpg"], {}, 1, "cannot open http://127.0.0.1:9/cam.mjpg"),
        (["clip.avi"], {"GTX_REDIS__URL": ""}, 2, "no Redis URL"),
        (["clip.avi", "--every", "0"], {}, 2, "--every"),
        ([], {}, 2, "give either SOURCE (or --sources FILE) or --tasks"),
    ],
    ids=["missing", "camera-99", "refused-url", "no-redis-url", "bad-every", "no-source"],
)
def test_command_errors_are_one_line(
    redis_url: str, tmp_path: Path, args: list[str], env: dict[str, str], code: int, message: str
) -> None:
    proc = gtx(args, redis_url, tmp_path, **env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], err


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly(
    r: redis.Redis,
    redis_url: str,
    keys: Keys,
    video: tuple[Path, list[int]],
    tmp_path: Path,
    signum: int,
) -> None:
    proc = gtx([str(video[0])], redis_url, tmp_path, GTX_AGGREGATOR__MAX_OPEN_FRAMES="2")
    try:
        wait_until(lambda: r.zcard(keys.open_frames) == 2)  # now waiting for a free slot
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "opened 2," in out and "stopped: stop" in out


# --- Redis restarts while the ingester runs ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.redis
def test_ingester_rides_out_a_redis_restart(tmp_path: Path, video: tuple[Path, list[int]]) -> None:
    """Redis goes away mid-run: the ingester keeps its frame, retries, and finishes once."""
    from gtx_stream.ops.embedded import EmbeddedRedis

    path, truths = video
    server = EmbeddedRedis(data_dir=tmp_path, appendonly=True).start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        keys = Keys("gtx")
        settings = make_settings(max_open_frames=4)
        runner = Runner(client, keys, settings, str(path))
        wait_until(lambda: client.zcard(keys.open_frames) == 4)  # blocked on backpressure
        time.sleep(1.2)  # let appendfsync everysec write the four frames out
        server.kill()
        time.sleep(0.5)  # the ingester now finds Redis gone and retries
        server.start()
        # play the aggregator: finalise whatever is open until the video is done
        while runner.thread.is_alive():
            for fid in client.zrange(keys.open_frames, 0, -1):
                client.zrem(keys.open_frames, fid)
            time.sleep(0.02)
        report = runner.join()
        assert report.opened == len(truths)
        assert sorted(opened_indices(client, keys)) == list(range(len(truths)))
    finally:
        server.cleanup()


@pytest.mark.slow
@pytest.mark.redis
def test_ingester_stops_when_redis_came_back_without_its_frames(
    tmp_path: Path, video: tuple[Path, list[int]]
) -> None:
    """A restart that lost writes (no persistence here): going on would skip those frames for
    good, so the ingester stops with a clear error and a restart opens them again."""
    from gtx_stream.ops.embedded import EmbeddedRedis
    from gtx_stream.pipeline.ingest.ingester import RedisLostWrites

    path, truths = video
    server = EmbeddedRedis(data_dir=tmp_path, appendonly=False).start()
    try:
        client = redis.Redis.from_url(server.url, decode_responses=True)
        keys = Keys("gtx")
        runner = Runner(client, keys, make_settings(max_open_frames=4), str(path))
        wait_until(lambda: client.zcard(keys.open_frames) == 4)
        server.kill()
        time.sleep(0.5)
        server.start()
        with pytest.raises(RedisLostWrites, match="frames 0..3"):
            runner.join()
        again = run_ingest(client, keys, make_settings(), str(path))  # the supervisor's restart
        assert again.opened == len(truths)
    finally:
        server.cleanup()


def test_a_live_stream_drops_frames_while_full_instead_of_waiting(
    r: redis.Redis, raw: redis.Redis, keys: Keys
) -> None:
    """Backpressure on a camera: frames that come while max open frames are open are
    dropped, so the next frame opened is a fresh one, not one that waited in a buffer."""
    with MjpegServer(n_frames=40, drop_after=100, interval=0.01) as camera:
        runner = Runner(raw, keys, make_settings(max_open_frames=3), camera.url)
        wait_until(lambda: r.zcard(keys.open_frames) == 3)
        wait_until(lambda: camera.sent >= 20)
        sent = camera.sent  # frames sent when the slots free up
        r.zrem(keys.open_frames, *r.zrange(keys.open_frames, 0, -1))  # three slots free up
        wait_until(lambda: r.zcard(keys.open_frames) == 3)
        camera.done.wait(10)
        runner.stop.set()
        report = runner.join()
    ids = opened_ids(r, keys)
    assert report.opened == len(ids) == 6
    assert report.dropped >= 10
    levels = [frame_of_level(float(decode(raw.get(keys.image(i)), 0).mean())) for i in ids[3:]]
    # fresh frames after the slots freed, not frames 3, 4, 5 from a buffer: at most the three
    # frames in flight (sent, not yet read and decoded) are older than the camera's count
    assert min(levels) >= max(sent - 3, 6), (sent, levels)


def test_source_id_can_be_given(r: redis.Redis, keys: Keys, video: tuple[Path, list[int]]) -> None:
    path, truths = video
    report = run_ingest(r, keys, make_settings(), str(path), source_id="line-3.cam")
    assert report.opened == len(truths)
    assert opened_ids(r, keys)[:2] == ["line-3.cam-0", "line-3.cam-1"]
    with pytest.raises(SourceError, match="source id"):
        run_ingest(r, keys, make_settings(), str(path), source_id="no spaces")
