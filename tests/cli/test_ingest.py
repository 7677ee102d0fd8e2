"""`gtx-stream ingest` as a user runs it: its summary, once."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.store.keys import Keys
from tests.cli.conftest import Gtx, one_line


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
    # one source failed, of a missing file, which a restart would not mend: 2 (it was 1)
    assert done.returncode == 2, done.stderr
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
    # a camera that cannot be opened now may be there after a restart: 1
    done = gtx("ingest", str(videos[0]), "99", GTX_REDIS__URL=redis_url)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[1] == "ingest 99: failed: cannot open camera 99"


def test_several_sources_refuse_one_source_options(gtx: Gtx, tmp_path: Path) -> None:
    done = gtx("ingest", "a.avi", "b.avi", "--source-id", "x")
    assert done.returncode == 2 and "go with one SOURCE" in done.stderr
    bad = tmp_path / "s.txt"
    bad.write_text("a.avi name extra\n")
    done = gtx("ingest", "--sources", str(bad))
    assert done.returncode == 2 and "line 1: expected 'SOURCE [NAME] [truth=CSV]'" in done.stderr
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
    assert "no truth for a.avi, b.avi, and every configured labeler is simulated" in done.stderr


def test_with_only_simulated_labelers_the_sources_without_a_truth_are_named(
    gtx: Gtx, tmp_path: Path
) -> None:
    (tmp_path / "config.toml").write_text(SIMULATED_ONLY)
    write_truth_csv(tmp_path / "ta.csv", [0, 1])
    sources = tmp_path / "s.txt"
    sources.write_text("a.avi cam-a truth=ta.csv\nb.avi cam-b\n")
    done = gtx("ingest", "c.avi", "--sources", str(sources),
               GTX_REDIS__URL="redis://127.0.0.1:1/0")  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    line = one_line(done.stderr)
    assert line.startswith("gtx-stream ingest: error: no truth for c.avi, b.avi, and every "), line


@pytest.mark.parametrize(
    ("truth", "message"),
    [
        (None, "truth of b.avi: {dir}/tb.csv: no such file"),
        (b"frame_index,truth\n0,2\n", "truth of b.avi: {dir}/tb.csv:2: truth must be 0 or 1"),
        (b"frame_index,truth\n0,1\n0,0\n", "tb.csv:3: frame 0 has a second truth row"),
        (b"index,truth\n0,1\n", "tb.csv: expected header frame_index,truth, got index,truth"),
        (b"frame_index,truth\n0,\xff\n", "cannot read {dir}/tb.csv: not UTF-8 text"),
    ],
    ids=["missing", "not-binary", "twice", "header", "not-utf8"],
)
def test_a_truth_file_that_cannot_be_used_is_refused_before_any_source_starts(
    gtx: Gtx, tmp_path: Path, truth: bytes | None, message: str
) -> None:
    video = tmp_path / "a.avi"
    write_truth_csv(tmp_path / "ta.csv", write_synthetic_video(video, 2, seed=0))
    if truth is not None:
        (tmp_path / "tb.csv").write_bytes(truth)
    sources = tmp_path / "s.txt"
    sources.write_text(f"{video} cam-a truth=ta.csv\nb.avi cam-b truth=tb.csv\n")
    # no Redis there: the truth file, not a connection error, ends it, before any source
    done = gtx("ingest", "--sources", str(sources), GTX_REDIS__URL="redis://127.0.0.1:1/0")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert message.format(dir=tmp_path) in one_line(done.stderr)


def test_one_truth_for_one_source_given_twice_is_refused(gtx: Gtx, tmp_path: Path) -> None:
    write_truth_csv(tmp_path / "t.csv", [0, 1])
    sources = tmp_path / "s.txt"
    sources.write_text("a.avi cam-a truth=t.csv\n")
    done = gtx("ingest", "--sources", str(sources), "--truth", "t.csv")
    assert done.returncode == 2 and "both give the source a truth" in one_line(done.stderr)


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


def test_one_file_under_two_names_is_refused_before_any_starts(gtx: Gtx, tmp_path: Path) -> None:
    # two NAMEs made two source ids: both threads read the file, each frame was labeled twice
    video = tmp_path / "clip.avi"
    write_synthetic_video(video, 2, seed=0)
    sources = tmp_path / "s.txt"
    sources.write_text("clip.avi cam-a\n./clip.avi cam-b\n")
    done = gtx("ingest", "--sources", str(sources), GTX_REDIS__URL="redis://127.0.0.1:1/0")
    assert done.returncode == 2 and done.stdout == "", done.stderr
    line = one_line(done.stderr)
    assert f"{video} is given twice ('clip.avi' and './clip.avi', under two names)" in line
