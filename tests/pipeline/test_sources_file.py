"""A sources file (``gtx-stream ingest --sources FILE``): one ``SOURCE [NAME] [truth=CSV]`` a
line, and each source's frames carrying their own truth through a real pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gtx_stream.core.draws import simulated_label
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.ingest.many import SourceSpec, read_sources_file, read_truths
from gtx_stream.pipeline.ingest.sources import SourceError
from gtx_stream.store.keys import source_of
from tests.pipeline_fixtures import check_final_records, final_records, pipeline


def test_a_file_without_truths_reads_as_before(tmp_path: Path) -> None:
    file = tmp_path / "cams.txt"
    file.write_text(
        "# line 3\n\n  a.avi\n'my dir/b.avi' cam-b\nrtsp://h/live?user=x&truth=1 cam-c\n"
    )
    assert read_sources_file(file) == [
        SourceSpec("a.avi"),
        SourceSpec("my dir/b.avi", "cam-b"),
        SourceSpec("rtsp://h/live?user=x&truth=1", "cam-c"),
    ]


def test_each_line_may_give_its_truth_relative_to_the_file_s_folder(tmp_path: Path) -> None:
    file = tmp_path / "cams" / "cams.txt"
    file.parent.mkdir()
    file.write_text(
        "a.avi truth=ta.csv\n"
        "b.avi cam-b truth=/data/tb.csv\n"
        "'c d.avi' 'truth=t c.csv' cam-c\n"  # quoted words keep their spaces
        'truth=x.avi "truth=sub/t=x.csv"\n'  # the first word is the SOURCE, whatever it reads
    )
    assert read_sources_file(file) == [
        SourceSpec("a.avi", None, str(file.parent / "ta.csv")),
        SourceSpec("b.avi", "cam-b", "/data/tb.csv"),
        SourceSpec("c d.avi", "cam-c", str(file.parent / "t c.csv")),
        SourceSpec("truth=x.avi", None, str(file.parent / "sub" / "t=x.csv")),
    ]


@pytest.mark.parametrize(
    "line",
    ["a.avi cam-a cam-b", "a.avi truth=x.csv truth=y.csv", "a.avi cam-a truth="],
    ids=["two-names", "two-truths", "empty-truth"],
)
def test_a_line_with_more_than_a_name_and_a_truth_is_refused(tmp_path: Path, line: str) -> None:
    file = tmp_path / "cams.txt"
    file.write_text(f"ok.avi\n{line}\n")
    with pytest.raises(SourceError) as info:
        read_sources_file(file)
    assert str(info.value) == (
        f"{file}: line 2: expected 'SOURCE [NAME] [truth=CSV]', got {line!r}"
    )


def test_truths_are_read_for_the_sources_that_have_one(tmp_path: Path) -> None:
    write_truth_csv(tmp_path / "t.csv", [1, 0, 1])
    specs = [SourceSpec("a.avi", truth=str(tmp_path / "t.csv")), SourceSpec("b.avi")]
    assert read_truths(specs) == [{0: 1, 1: 0, 2: 1}, None]
    (tmp_path / "bad.csv").write_text("frame_index,truth\n0,yes\n")
    specs.append(SourceSpec("c.avi", truth=str(tmp_path / "bad.csv")))
    with pytest.raises(SourceError, match=r"^truth of c\.avi: .*bad\.csv:2: truth must be 0 or 1"):
        read_truths(specs)


SEED = 5
ACCURACIES = {"ann": 0.9, "bob": 0.8, "cid": 0.7}


@pytest.mark.slow
@pytest.mark.redis
def test_one_ingester_gives_each_source_s_frames_their_own_truth(
    tmp_path: Path, redis_url: str
) -> None:
    # only simulated labelers: before, several sources were refused (no truth but one --truth)
    truths = {
        "cam-a": write_synthetic_video(tmp_path / "a.avi", 8, seed=1),
        "cam-b": write_synthetic_video(tmp_path / "b.avi", 8, seed=2),
    }
    assert truths["cam-a"] != truths["cam-b"]  # else a mix-up would not show
    (tmp_path / "truths").mkdir()
    for name, t in truths.items():
        write_truth_csv(tmp_path / "truths" / f"{name}.csv", t)
    sources = tmp_path / "sources.txt"
    sources.write_text(  # truth paths relative to the file's folder
        f"{tmp_path / 'a.avi'} cam-a truth=truths/cam-a.csv\n"
        f"{tmp_path / 'b.avi'} cam-b truth=truths/cam-b.csv\n"
    )
    labelers = [{"id": lab, "backend": "simulated", "accuracy": a, "seed": SEED}
                for lab, a in ACCURACIES.items()]  # fmt: skip
    agg = {"tau": 0.95, "kappa": 3, "seed": SEED}
    with pipeline(tmp_path, redis_url, aggregator=agg, labelers=labelers) as p:
        p.start("aggregator", "aggregator", "--consumer", "agg-1")
        p.start("labelers", "labeler", "--all")
        p.wait_aggregator_group()
        p.wait_live(list(ACCURACIES))
        p.start("ingester", "ingest", "--sources", str(sources))
        p.wait_until(lambda: p.finished(16), "16 frames to be finalised", 90)
        ingester = p.sup.services["ingester"]
        assert ingester.returncode == 0, p.logs()
        records = final_records(p.client, p.keys)
        frame_truths = {
            f["frame_id"]: p.client.hget(p.keys.frame(f["frame_id"]), "truth") for f in records
        }
        dead = p.client.xlen(p.keys.dead)

    assert dead == 0
    check_final_records(records, 0.95, 3)
    assert sorted(f["frame_id"] for f in records) == sorted(
        f"{name}-{i}" for name in truths for i in range(8)
    )
    for f in records:
        fid, truth = f["frame_id"], truths[source_of(f["frame_id"])][int(f["frame_index"])]
        assert frame_truths[fid] == str(truth), fid
        # every label was drawn from the frame's own truth
        want = [
            simulated_label(SEED, fid, lab, truth, ACCURACIES[lab])
            for lab in json.loads(f["labelers"])
        ]
        assert json.loads(f["labels"]) == want, fid
