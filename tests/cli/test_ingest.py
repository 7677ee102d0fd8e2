"""`gtx-stream ingest` as a user runs it: its summary, once."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from gtx_stream.ops.synthetic import write_synthetic_video
from gtx_stream.store.keys import Keys
from tests.cli.conftest import Gtx


def test_ingest_prints_its_summary_once(gtx: Gtx, redis_url: str, tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    write_synthetic_video(video, 4, seed=0)
    done = gtx("ingest", str(video), GTX_REDIS__URL=redis_url)
    assert done.returncode == 0, done.stderr
    summary = f"ingest {video}: read 4, opened 4, skipped 0, duplicates refused 0; stopped: end"
    assert done.stdout.splitlines() == [summary]
    assert (done.stdout + done.stderr).count("opened 4") == 1, done.stderr


@pytest.mark.redis
def test_one_ingester_reads_several_sources_and_a_dead_one_stops_no_other(
    gtx: Gtx, redis_url: str, tmp_path: Path
) -> None:
    videos = [tmp_path / "a.avi", tmp_path / "b.avi"]
    for i, v in enumerate(videos):
        write_synthetic_video(v, 3 + i, seed=i)
    sources = tmp_path / "cams.txt"
    sources.write_text(f"# line 3\n{videos[1]} cam-b\n\n{tmp_path / 'gone.avi'} cam-x\n")
    done = gtx("ingest", str(videos[0]), "--sources", str(sources), GTX_REDIS__URL=redis_url)
    assert done.returncode == 1, done.stderr  # one source failed
    lines = done.stdout.splitlines()
    assert (
        lines[0]
        == f"ingest {videos[0]}: read 3, opened 3, skipped 0, duplicates refused 0; stopped: end"
    )
    assert lines[1].startswith(f"ingest {videos[1]}: read 4, opened 4,")
    assert lines[2].startswith(f"ingest {tmp_path / 'gone.avi'}: failed:")
    r = redis.Redis.from_url(redis_url, decode_responses=True)
    ids = sorted(r.zrange(Keys("gtx").open_frames, 0, -1))
    assert len(ids) == 7 and sum(fid.startswith("cam-b-") for fid in ids) == 4


def test_several_sources_refuse_one_source_options(gtx: Gtx, tmp_path: Path) -> None:
    done = gtx("ingest", "a.avi", "b.avi", "--source-id", "x")
    assert done.returncode == 2 and "go with one SOURCE" in done.stderr
    bad = tmp_path / "s.txt"
    bad.write_text("a.avi name extra\n")
    done = gtx("ingest", "--sources", str(bad))
    assert done.returncode == 2 and "line 1: expected 'SOURCE [NAME]'" in done.stderr
    bad.write_text("a.avi x\nb.avi x\n")
    done = gtx("ingest", "--sources", str(bad), GTX_REDIS__URL="redis://127.0.0.1:1/0")
    assert done.returncode != 0 and "given twice" in done.stderr
