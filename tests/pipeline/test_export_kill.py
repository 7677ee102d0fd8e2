"""The exporter under kill -9 (invariant 8): a real ``gtx-stream export --follow`` process, killed
at random moments while it works and restarted, exports every finalised frame exactly once,
byte-identical to the JPEG the ingester stored, and ``export --check`` passes.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from gtx_stream.ops.demo import write_config
from gtx_stream.pipeline.export.layout import class_folder_files
from gtx_stream.store.keys import Keys
from tests.pipeline.test_export import finalise_frames, manifest_rows

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 500
ROUNDS = 10  # kills; each round adds FRAMES // ROUNDS frames while an exporter runs


def _exporter(config: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "gtx_stream", "export", "--follow", "--out", str(out),
             "--config", str(config), "--consumer", f"e-{time.monotonic_ns()}"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=f, stderr=f,
        )  # fmt: skip


def _rows(out: Path) -> int:
    path = out / "manifest.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.chaos
def test_exporter_killed_at_random_moments_exports_each_frame_once(
    r: redis.Redis, keys: Keys, redis_url: str, tmp_path: Path
) -> None:
    rng = random.Random(8)
    config = tmp_path / "export.toml"
    write_config(config, {"redis": {"url": redis_url, "prefix": keys.prefix},
                          "export": {"batch_size": 8}}, [])  # fmt: skip
    out, log = tmp_path / "ds", tmp_path / "exporter.log"
    stored: dict[str, bytes] = {}  # the ingester's JPEGs, kept before any export
    interrupted = 0  # kills that left entries read but not acknowledged
    sizes = [FRAMES // ROUNDS + (i < FRAMES % ROUNDS) for i in range(ROUNDS)]
    for size in sizes:
        proc = _exporter(config, out, log)
        before = _rows(out)
        stored |= finalise_frames(r, keys, size, start=len(stored), seconds_apart=7.0)
        deadline = time.monotonic() + 30
        while _rows(out) == before and time.monotonic() < deadline:  # it is exporting
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.03))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        interrupted += int(r.xpending(keys.final, "exporter")["pending"] > 0)

    proc = _exporter(config, out, log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = _rows(out) >= FRAMES and r.xpending(keys.final, "exporter")["pending"] == 0
            if done and not r.xinfo_groups(keys.final)[0]["lag"]:
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]

    assert len(stored) == FRAMES and r.xlen(keys.final) == FRAMES
    assert interrupted >= 3, f"only {interrupted} of {ROUNDS} kills interrupted a batch"
    rows = manifest_rows(out)
    ids = [row["frame_id"] for row in rows]
    assert len(ids) == len(set(ids)) == FRAMES, "a frame missing or twice in the manifest"
    assert {row["image_status"] for row in rows} == {"ok"}
    on_disk = class_folder_files(out)
    assert len(on_disk) == FRAMES, "a frame missing or twice in the folder"
    for row in rows:
        assert on_disk[row["file_name"]].read_bytes() == stored[row["frame_id"]], row["frame_id"]
    assert not any(r.exists(keys.image(fid)) for fid in stored), "a JPEG left in Redis"
    assert r.hget(keys.stats, "images_exported") == str(FRAMES)
    check = subprocess.run([sys.executable, "-m", "gtx_stream", "export", "--check", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert check.returncode == 0, check.stdout[-3000:]
