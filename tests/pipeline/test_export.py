"""The exporter (gtx_stream.pipeline.export): layout, splits, manifest, missing images, filters,
exactly once after a crash, --check, and the folder loaded by Hugging Face ``datasets``.

Final records are real ones: frames opened with the ingester's ``open_frame`` (real JPEGs), and
finalised by the aggregator (``finalise.lua``) answering through the in-process harness.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from gtx_stream.config import ExportSettings
from gtx_stream.core.records import FinalRecord
from gtx_stream.pipeline.export.check import check_folder
from gtx_stream.pipeline.export.exporter import Exporter, ExportError, below, missing_note
from gtx_stream.pipeline.export.layout import (
    class_folder_files,
    file_stem,
    split_of,
    split_of_record,
)
from gtx_stream.pipeline.export.manifest import MANIFEST, METADATA, metadata_row, row_of
from gtx_stream.pipeline.ingest.ingester import open_frame
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import Capture, make_aggregator, register, run_until_idle

ACCURACIES = {"a": 0.9, "b": 0.85, "c": 0.8, "d": 0.75}


def jpeg_of(i: int) -> bytes:
    """A small JPEG that differs per frame."""
    img = np.full((16, 16, 3), i % 256, np.uint8)
    img[i % 16, :, :] = 255 - (i % 256)
    ok, buf = cv2.imencode(".jpg", img)
    assert ok
    return buf.tobytes()


def finalise_frames(
    r: redis.Redis,
    keys: Keys,
    n: int,
    *,
    start: int = 0,
    opened_at: float | None = None,
    seconds_apart: float = 1.0,
    ttl: int = 3600,
    source_id: str = "cam",
) -> dict[str, bytes]:
    """Open ``n`` frames with real JPEGs, finalise them with the aggregator; frame id -> JPEG."""
    register(r, keys, ACCURACIES)
    t0 = time.time() // 3600 * 3600 if opened_at is None else opened_at
    jpegs = {}
    for i in range(start, start + n):
        jpeg = jpeg_of(i)
        status = open_frame(r, keys, source=f"video:{source_id}", source_id=source_id,
                            frame_index=i, jpeg=jpeg, ttl=ttl, max_open_frames=10**6,
                            fields={"truth": str(i % 2)}, opened_at=t0 + i * seconds_apart,
                            reserve_per_frame=0)  # fmt: skip
        assert status == "opened"
        jpegs[f"{source_id}-{i}"] = jpeg
    capture = Capture()
    agg = make_aggregator(r, keys, capture, tau=0.95, kappa=3)
    run_until_idle(agg, r, keys, capture, ACCURACIES)
    return jpegs


def export(r: redis.Redis, keys: Keys, out: Path, fmt: str = "folder", **settings: Any) -> Exporter:
    """One run of the exporter, as ``gtx-stream export --out out`` (a client that reads bytes)."""
    raw = redis.Redis(connection_pool=redis.ConnectionPool.from_url(_url(r)))
    settings.setdefault("block_frames", 2)  # a few dozen frames: several blocks, several splits
    exporter = Exporter(raw, keys, ExportSettings(**settings), out, fmt=fmt, consumer="e1")
    exporter.setup()
    try:
        exporter.run(threading.Event(), follow=False)
    finally:
        exporter.close()
        raw.close()
    return exporter


def _url(r: redis.Redis) -> str:
    kw = r.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def manifest_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / MANIFEST).read_text().splitlines()]


# --- splits and names (no Redis) ---------------------------------------------------------------


def test_split_is_a_function_of_source_and_block_of_frames_alone() -> None:
    s = ExportSettings(block_frames=30, val_fraction=0.2, test_fraction=0.1)
    # every frame of one block, and the same block on another call, share one split
    for block in range(50):
        splits = {split_of("cam-1", block * 30 + i, s) for i in (0, 13, 29)}
        assert len(splits) == 1
        assert split_of("cam-1", block * 30 + 1, s) == splits.pop()
    counts = {k: 0 for k in ("train", "val", "test")}
    for block in range(4000):
        counts[split_of("cam-1", block * 30, s)] += 1
    assert 0.67 < counts["train"] / 4000 < 0.73
    assert 0.17 < counts["val"] / 4000 < 0.23
    assert 0.07 < counts["test"] / 4000 < 0.13
    # another source splits its blocks differently (a hash of both, not of the index alone)
    other = [split_of("cam-2", b * 30, s) for b in range(200)]
    assert other != [split_of("cam-1", b * 30, s) for b in range(200)]
    assert {split_of("x", i, ExportSettings(val_fraction=0, test_fraction=0))
            for i in range(0, 10**6, 997)} == {"train"}  # fmt: skip


def test_a_short_video_gets_every_split() -> None:
    """Successive blocks spread evenly: any 20 blocks in a row hold val and test at 0.1 each."""
    s = ExportSettings(block_frames=50, val_fraction=0.1, test_fraction=0.1)
    for source in (f"/videos/line-{k}.avi" for k in range(200)):
        splits = [split_of(source, b * 50, s) for b in range(21)]  # 1,050 frames
        assert {"train", "val", "test"} == set(splits), source
        assert 1 <= splits.count("val") <= 3 and 1 <= splits.count("test") <= 3


def test_split_of_a_record_goes_by_frame_index_not_by_when_it_was_read() -> None:
    s = ExportSettings(block_frames=10, val_fraction=0.5, test_fraction=0.0)
    base = FinalRecord("cam-0", 1, 0.9, 0.9, "confident", "gtx", ["a"], [1], [0.9], 100.0,
                       source="/videos/line.avi", frame_index=0, opened_at=100.0)  # fmt: skip
    splits = []
    for i in range(200):
        # the whole file read within a tenth of a second: still 20 blocks, split as a camera's
        rec = FinalRecord(**{**base.__dict__, "frame_id": f"cam-{i}", "frame_index": i,
                             "opened_at": 100.0 + i / 2000})  # fmt: skip
        split = split_of_record(rec, s)
        assert split == split_of("/videos/line.avi", i, s)
        splits.append(split)
    assert {"train", "val"} == set(splits)
    assert all(len(set(splits[b * 10 : b * 10 + 10])) == 1 for b in range(20))
    # a frame of unknown index is a block of its own, by its id
    lone = FinalRecord(**{**base.__dict__, "frame_id": "upload-7", "frame_index": -1})
    assert split_of_record(lone, s) == split_of("upload-7", 0, s)


def test_file_names_are_safe() -> None:
    assert file_stem("cam-12") == "cam-12"
    for bad in ("../etc/passwd", "a/b", ".hidden", "x" * 300, "é"):
        stem = file_stem(bad)
        assert "/" not in stem and not stem.startswith(".") and len(stem) < 64


def test_a_two_coin_record_keeps_its_model_and_coins_in_the_manifest_and_metadata() -> None:
    rec = FinalRecord(frame_id="cam-3", label=1, p1=0.97, confidence=0.97, reason="confident",
                      method="gtx", labelers=["a", "b"], labels=[1, 1], accuracies=[0.85, 0.8],
                      finalised_at=10.0, model="two_coin", sensitivities=[0.9, 0.7],
                      specificities=[0.8, 0.9])  # fmt: skip
    row = row_of(rec, split="train", class_name="yes", status="ok", note="",
                 written=None, exported_at=11.0)  # fmt: skip
    assert (row["model"], row["sensitivities"], row["specificities"]) == (
        "two_coin", [0.9, 0.7], [0.8, 0.9])  # fmt: skip
    row["file_name"] = "train/yes/cam-3.jpg"
    meta = metadata_row(row)
    assert meta["model"] == "two_coin" and json.loads(meta["sensitivities"]) == [0.9, 0.7]
    # a row of a manifest written before these columns existed reads as one coin
    old = {k: v for k, v in row.items() if k not in ("model", "sensitivities", "specificities")}
    meta = metadata_row(old)
    assert (meta["model"], meta["sensitivities"], meta["specificities"]) == ("one_coin", "[]", "[]")


def test_a_filtered_confidence_is_never_printed_at_or_above_the_threshold() -> None:
    assert below(0.93124, 0.99) == "0.9312"
    assert below(0.99899, 0.999) == "0.99899"
    assert float(below(0.999 - 1e-12, 0.999)) < 0.999


def test_missing_note_says_why() -> None:
    rec = FinalRecord("f", 1, 0.9, 0.9, "confident", "gtx", ["a"], [1], [0.9], 100.0)
    assert "gone at finalisation" in missing_note(rec, 200.0)
    expired = FinalRecord(**{**rec.__dict__, "image_expires_at": 150.0})
    assert "TTL ran out" in missing_note(expired, 200.0)
    assert "gone before its TTL" in missing_note(expired, 120.0)


# --- the exporter on a real Redis --------------------------------------------------------------


def test_exports_every_frame_once_into_class_folders(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    jpegs = finalise_frames(r, keys, 40)
    out = tmp_path / "ds"
    exporter = export(r, keys, out, class_names=["no", "yes"], block_frames=2,
                      val_fraction=0.3, test_fraction=0.2)  # fmt: skip
    assert exporter.report.exported == 40 and exporter.report.missing == 0
    rows = manifest_rows(out)
    assert sorted(row["frame_id"] for row in rows) == sorted(jpegs)
    finals = {rec["frame_id"]: rec for _, rec in r.xrange(keys.final)}
    for row in rows:
        assert row["image_status"] == "ok"
        # every field of the final record, and where the image is
        rec = FinalRecord.from_fields(finals[row["frame_id"]])
        assert (row["label"], row["p1"], row["reason"], row["labels"], row["labelers"],
                row["accuracies"], row["frame_index"], row["source"]) == (
                rec.label, rec.p1, rec.reason, rec.labels, rec.labelers, rec.accuracies,
                rec.frame_index, rec.source)  # fmt: skip
        assert row["class_name"] == ["no", "yes"][rec.label]
        assert row["file_name"] == f"{row['split']}/{row['class_name']}/{row['frame_id']}.jpg"
        data = (out / row["file_name"]).read_bytes()
        assert data == jpegs[row["frame_id"]]
        assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["bytes"] == len(data)
    # blocks of two frames: pairs share a split
    by_index = {row["frame_index"]: row["split"] for row in rows}
    assert all(by_index[2 * k] == by_index[2 * k + 1] for k in range(20))
    assert len(set(by_index.values())) >= 2
    # the JPEGs are gone from Redis, the entries acknowledged, the counts in stats
    assert not any(r.exists(keys.image(fid)) for fid in jpegs)
    assert r.xpending(keys.final, "exporter")["pending"] == 0
    assert r.hget(keys.stats, "images_exported") == "40"
    assert check_folder(out) == []
    # a second run finds nothing new
    assert export(r, keys, out).report.exported == 0
    assert len(manifest_rows(out)) == 40


def test_class_folders_follow_the_convention(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    """DIR/<split>/<class>/<file>.jpg, the layout ImageFolder, Keras image_dataset_from_directory
    and Ultralytics read: class folders hold JPEG files and nothing else, each a decodable image
    of its own class; nothing else in the split folders but the HF metadata file."""
    finalise_frames(r, keys, 30, seconds_apart=40.0)
    out = tmp_path / "ds"
    export(r, keys, out, val_fraction=0.3, test_fraction=0.2)
    rows = {row["file_name"]: row for row in manifest_rows(out)}
    splits = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert set(splits) <= {"train", "val", "test"} and "train" in splits
    for split in splits:
        entries = sorted((out / split).iterdir())
        assert {p.name for p in entries if p.is_file()} == {METADATA}
        for folder in (p for p in entries if p.is_dir()):
            assert folder.name in ("0", "1")
            for f in folder.iterdir():
                assert f.is_file() and f.suffix == ".jpg", f
                assert cv2.imread(str(f)) is not None, f
                assert rows[f"{split}/{folder.name}/{f.name}"]["label"] == int(folder.name)
    assert len(class_folder_files(out)) == 30


def test_missing_images_are_recorded_with_why_and_counted(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    jpegs = finalise_frames(r, keys, 6)
    gone = sorted(jpegs)[:2]
    r.delete(*[keys.image(fid) for fid in gone])  # as a Redis restart without AOF would
    out = tmp_path / "ds"
    report = export(r, keys, out).report
    assert (report.exported, report.missing) == (4, 2)
    rows = {row["frame_id"]: row for row in manifest_rows(out)}
    for fid in gone:
        assert rows[fid]["image_status"] == "missing"
        assert "gone before its TTL" in rows[fid]["image_note"]
        assert rows[fid]["file_name"] == "" and rows[fid]["label"] in (0, 1)
    assert r.hget(keys.stats, "images_missing") == "2"
    assert len(class_folder_files(out)) == 4
    assert check_folder(out) == []


def test_an_image_whose_ttl_ran_out_is_missing_for_that_reason(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    finalise_frames(r, keys, 2, ttl=1)
    time.sleep(1.2)
    out = tmp_path / "ds"
    assert export(r, keys, out).report.missing == 2
    assert all("TTL ran out" in row["image_note"] for row in manifest_rows(out))


def test_filters_keep_the_row_and_leave_the_image_out(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    finalise_frames(r, keys, 30)
    finals = [FinalRecord.from_fields(f) for _, f in r.xrange(keys.final)]
    low = {f.frame_id for f in finals if f.confidence < 0.99}
    assert low and len(low) < 30, "want frames on both sides of the threshold"
    out = tmp_path / "ds"
    report = export(r, keys, out, min_confidence=0.99).report
    assert (report.exported, report.filtered) == (30 - len(low), len(low))
    rows = {row["frame_id"]: row for row in manifest_rows(out)}
    assert {f for f, row in rows.items() if row["image_status"] == "filtered"} == low
    assert all("confidence" in rows[f]["image_note"] for f in low)
    assert len(class_folder_files(out)) == 30 - len(low)
    assert not any(r.exists(keys.image(f)) for f in rows), "filtered JPEGs stay in Redis"
    assert check_folder(out) == []


def test_frames_ended_for_budget_or_exhausted_are_marked_and_can_be_left_out(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    register(r, keys, {"a": 0.7})  # one weak labeler: every frame ends exhausted
    for i in range(3):
        open_frame(r, keys, source="s", source_id="s", frame_index=i, jpeg=jpeg_of(i),
                   ttl=600, max_open_frames=100, reserve_per_frame=0)  # fmt: skip
    capture = Capture()
    run_until_idle(make_aggregator(r, keys, capture, tau=0.99, kappa=3), r, keys, capture,
                   {"a": 0.7})  # fmt: skip
    out = tmp_path / "ds"
    report = export(r, keys, out, reasons=["confident", "kappa"]).report
    assert report.filtered == 3
    for row in manifest_rows(out):
        assert row["reason"] == "exhausted" and row["unconfident"] is True
        assert row["image_status"] == "filtered" and "exhausted" in row["image_note"]


def test_a_restart_after_a_crash_repairs_the_folder_and_writes_nothing_twice(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    jpegs = finalise_frames(r, keys, 10)
    out = tmp_path / "ds"
    export(r, keys, out)
    rows = manifest_rows(out)
    finals = {f["frame_id"]: f for _, f in r.xrange(keys.final)}
    # A crash as the exporter leaves it: the row of `lost` half written after its image was
    # renamed into place, and its entry not acknowledged (nor its JPEG deleted); `done` has
    # its row but was killed before XACK; an entry read by a consumer that is now dead.
    lost, done = rows[-1], rows[0]
    data = (out / MANIFEST).read_bytes()
    (out / MANIFEST).write_bytes(data[: data.rfind(b"\n", 0, len(data) - 1) + 1] + b'{"frame')
    for row in (lost, done):
        r.xadd(keys.final, finals[row["frame_id"]])
        r.set(keys.image(row["frame_id"]), jpegs[row["frame_id"]])
    r.xreadgroup("exporter", "dead-one", {keys.final: ">"})
    stray = out / lost["split"] / lost["class_name"] / "stray.jpg"
    stray.write_bytes(b"not in the manifest")
    assert check_folder(out) != []

    report = export(r, keys, out).report
    assert (report.exported, report.already) == (1, 1)
    assert not stray.exists()
    assert (out / lost["file_name"]).read_bytes() == jpegs[lost["frame_id"]]
    assert sorted(row["frame_id"] for row in manifest_rows(out)) == sorted(jpegs)
    assert r.xpending(keys.final, "exporter")["pending"] == 0
    assert not r.exists(keys.image(lost["frame_id"])) and not r.exists(keys.image(done["frame_id"]))
    # counted once each: the first run's 10, less the row lost, plus the one written again
    assert r.hget(keys.stats, "images_exported") == "12", "redelivered entries count when acked"
    assert check_folder(out) == []


def test_a_second_exporter_on_the_same_folder_is_refused(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    first = Exporter(r, keys, ExportSettings(), out)
    first.setup()
    try:
        with pytest.raises(ExportError, match="in use by another exporter"):
            Exporter(r, keys, ExportSettings(), out).setup()
    finally:
        first.close()


def test_a_new_folder_on_a_group_that_has_read_entries_says_why_it_gets_none(
    r: redis.Redis, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gtx_stream.pipeline.export.exporter")
    export(r, keys, tmp_path / "early")  # the group is made on an empty stream: read nothing
    finalise_frames(r, keys, 4)
    export(r, keys, tmp_path / "first")
    assert caplog.messages == []
    second = export(r, keys, tmp_path / "second")
    assert second.report.exported == 0
    assert caplog.messages == [
        f"{tmp_path / 'second'} has no manifest yet, but the group 'exporter' has already read 4 "
        "final entries into another folder: only frames finalised after them come here "
        "(export.group names the group)"
    ]
    caplog.clear()
    export(r, keys, tmp_path / "first")  # its own folder: nothing to say
    export(r, keys, tmp_path / "other", group="other")  # another group: every frame, missing
    assert caplog.messages == []


def test_check_names_each_problem(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    finalise_frames(r, keys, 8)
    out = tmp_path / "ds"
    export(r, keys, out)
    rows = manifest_rows(out)
    (out / rows[0]["file_name"]).write_bytes(b"tampered")
    (out / rows[1]["file_name"]).unlink()
    (out / rows[2]["split"] / rows[2]["class_name"] / "extra.jpg").write_bytes(b"x")
    with open(out / MANIFEST, "a") as f:
        f.write(json.dumps(rows[3]) + "\n")
    problems = check_folder(out)
    assert any(rows[0]["frame_id"] in p and "differs" in p for p in problems)
    assert any(rows[1]["frame_id"] in p and "does not exist" in p for p in problems)
    assert any("extra.jpg" in p and "without a manifest row" in p for p in problems)
    assert any(rows[3]["frame_id"] in p and "2 manifest rows" in p for p in problems)


@pytest.mark.parametrize(
    ("made", "out", "err"),
    [
        (None, "nope: no such folder\n", "nope: 1 problem\n"),
        ("", "ds/manifest.jsonl: no manifest (is ds a folder written by gtx-stream export?)\n",
         "ds: 1 problem\n"),
    ],
    ids=["no-folder", "no-manifest"],
)  # fmt: skip
def test_check_of_a_folder_that_is_no_export_says_so(
    made: str | None, out: str, err: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from gtx_stream.cli import main

    monkeypatch.chdir(tmp_path)
    if made is not None:
        (tmp_path / "ds").mkdir()
    assert main(["export", "--check", "nope" if made is None else "ds"]) == 1
    assert capsys.readouterr() == (out, err)


# --- loading the folder ------------------------------------------------------------------------


def test_hugging_face_imagefolder_loads_the_folder(
    r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    jpegs = finalise_frames(r, keys, 40, seconds_apart=20.0)
    r.delete(keys.image(sorted(jpegs)[0]))  # a missing image must not break loading
    out = tmp_path / "ds"
    export(r, keys, out, val_fraction=0.3, test_fraction=0.2, min_confidence=0.9)
    rows = [row for row in manifest_rows(out) if row["image_status"] == "ok"]
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), cache_dir=str(tmp_path / "c"))
    names = {"train": "train", "val": "validation", "test": "test"}
    want = {names[s]: sorted(r["frame_id"] for r in rows if r["split"] == s) for s in names}
    assert {k: sorted(ds[k]["frame_id"]) for k in ds} == {k: v for k, v in want.items() if v}
    by_frame = {row["frame_id"]: row for row in rows}
    for split in ds:
        for item in ds[split]:
            row = by_frame[item["frame_id"]]
            assert (item["label"], item["p1"], item["reason"]) == (
                row["label"], row["p1"], row["reason"])  # fmt: skip
            assert json.loads(item["labels"]) == row["labels"]
            assert item["image"].size == (16, 16)


def test_parquet_export_loads_with_hugging_face(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("pyarrow")
    jpegs = finalise_frames(r, keys, 30, seconds_apart=20.0)
    out = tmp_path / "pq"
    export(r, keys, out, "parquet", val_fraction=0.3, test_fraction=0.0)
    assert check_folder(out) == []
    assert not class_folder_files(out)
    files = {s: str(out / s / "*.parquet") for s in ("train", "val") if (out / s).is_dir()}
    ds = datasets.load_dataset("parquet", data_files=files, cache_dir=str(tmp_path / "c"))
    seen = {}
    for split in ds:
        for item in ds[split]:
            seen[item["frame_id"]] = item
            assert item["split"] == split
            assert isinstance(item["labels"], list) and item["n_labels"] == len(item["labels"])
            assert item["model"] == "one_coin" and item["sensitivities"] == []
    assert sorted(seen) == sorted(jpegs)
    fid = sorted(jpegs)[3]
    assert seen[fid]["image"].size == (16, 16)
    with pytest.raises(ExportError, match="other format"):
        export(r, keys, out, "folder")


# --- its ACL user and status -------------------------------------------------------------------


@pytest.mark.redis
def test_the_exporter_runs_with_its_acl_user_of_docs_access(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gtx_stream.cli import main
    from gtx_stream.ops.demo import write_config
    from tests.store.test_access import start_server

    (tmp_path / "acl").mkdir()
    server = start_server(tmp_path / "acl", tls=False)
    try:
        admin = server.admin()
        keys = Keys("gtx")
        finalise_frames(admin, keys, 12)
        admin.acl_log_reset()
        config = tmp_path / "exporter.toml"
        write_config(config, {"redis": {"url": server.url("gtx-exporter")}}, [])
        out = tmp_path / "ds"
        assert main(["export", "--out", str(out), "--config", str(config)]) == 0
        assert "exported 12 images" in capsys.readouterr().out
        assert main(["status", "--check", "--config", str(config)]) == 0
        assert capsys.readouterr().out.startswith("healthy")
        assert main(["status", "--json", "--config", str(config)]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["images_exported"] == 12
        assert st["exporter"] == {"group": "exporter", "lag": 0, "pending": 0, "behind_s": 0.0}
        assert admin.acl_log() == []
        exporter = server.client("gtx-exporter")
        refused = [
            ["XADD", keys.final, "*", "frame_id", "f"],
            ["XTRIM", keys.final, "MAXLEN", "0"],
            ["HSET", keys.frame("f"), "state", "open"],
            ["HGETALL", keys.frame("f")],
            ["XADD", keys.labels, "*", "a", "b"],
        ]
        for command in refused:
            with pytest.raises(redis.exceptions.NoPermissionError):
                exporter.execute_command(*command)
    finally:
        server.embedded.stop()


def test_status_warns_when_the_exporter_lags(r: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    from gtx_stream.ops.status import exporter_warning, pipeline_status

    finalise_frames(r, keys, 5)
    assert pipeline_status(r, keys)["exporter"] is None  # no exporter group: nothing to say
    r.xgroup_create(keys.final, "exporter", id="0")
    r.xreadgroup("exporter", "e", {keys.final: ">"}, count=2)
    st = pipeline_status(r, keys)
    assert st["exporter"]["lag"] == 3 and st["exporter"]["pending"] == 2
    assert st["exporter"]["behind_s"] >= 0
    assert exporter_warning(st, lag_seconds=3600) is None
    time.sleep(0.05)
    warning = exporter_warning(pipeline_status(r, keys), lag_seconds=0.01)
    assert warning is not None and warning.startswith("exporter lags: 3 final entries")
    export(r, keys, tmp_path / "ds")
    st = pipeline_status(r, keys)
    assert (st["images_exported"], st["exporter"]["lag"], st["exporter"]["pending"]) == (5, 0, 0)
    assert exporter_warning(st, lag_seconds=0.0) is None
