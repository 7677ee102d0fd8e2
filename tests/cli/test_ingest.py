"""`gtx-stream ingest` as a user runs it: its summary, once."""

from __future__ import annotations

from pathlib import Path

from gtx_stream.ops.synthetic import write_synthetic_video
from tests.cli.conftest import Gtx


def test_ingest_prints_its_summary_once(gtx: Gtx, redis_url: str, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    write_synthetic_video(video, 4, seed=0)
    done = gtx("ingest", str(video), GTX_REDIS__URL=redis_url)
    assert done.returncode == 0, done.stderr
    summary = f"ingest {video}: read 4, opened 4, skipped 0, duplicates refused 0; stopped: end"
    assert done.stdout.splitlines() == [summary]
    assert (done.stdout + done.stderr).count("opened 4") == 1, done.stderr
