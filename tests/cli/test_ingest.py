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
    assert done.returncode == 2 and "given twice" in done.stderr


SIMULATED_ONLY = '[[labelers]]\nid = "alice"\nbackend = "simulated"\naccuracy = 0.9\n'


def test_several_sources_with_only_simulated_labelers_are_refused_in_one_line(
    gtx: Gtx, tmp_path: Path
) -> None:
    # each source used to fail in its own thread, with a traceback each and exit 1
    (tmp_path / "config.toml").write_text(SIMULATED_ONLY)
    done = gtx("ingest", "a.avi", "b.avi", GTX_REDIS__URL="redis://127.0.0.1:1/0")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "several sources carry no truth" in done.stderr


def test_one_source_spelled_twice_or_a_bad_name_is_refused_before_any_starts(
    gtx: Gtx, tmp_path: Path
) -> None:
    video = tmp_path / "clip.avi"
    write_synthetic_video(video, 2, seed=0)
    # two spellings of one file are one source id: their threads raced for the same frames
    done = gtx("ingest", "clip.avi", f"./../{tmp_path.name}/clip.avi",
               GTX_REDIS__URL="redis://127.0.0.1:1/0")  # fmt: skip
    assert done.returncode == 2 and "is given twice ('clip.avi' and" in done.stderr
    sources = tmp_path / "s.txt"
    sources.write_text("clip.avi bad/name\nclip.avi good\n")
    done = gtx("ingest", "--sources", str(sources), GTX_REDIS__URL="redis://127.0.0.1:1/0")
    assert done.returncode == 2 and "source id 'bad/name': use letters" in done.stderr
    assert done.stdout == ""
