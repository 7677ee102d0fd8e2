"""Two `gtx-stream aggregator` processes on four shards; one is killed (kill -9) mid-run.

The other takes its shards within a few seconds (its owner keys expire after
``shard_lease_seconds``) and the run ends with every opened frame on the final stream exactly
once, no frame with two labels of one labeler, and the budget not overspent. A third
aggregator configured with another shard count refuses to start with one line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gtx_stream.core.records import LabelEntry, decode_fields
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.store.keys import Keys, shard_of
from gtx_stream.store.shards import owners
from tests.pipeline_fixtures import final_records, pipeline

N_FRAMES = 160
SHARDS = 4
BUDGET = 420
ACC = {"ann": 0.9, "bob": 0.85, "cid": 0.8, "dee": 0.75}


def _wait(what: str, predicate: object, timeout: float) -> float:
    """Poll until true; the seconds it took."""
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out ({timeout:.0f} s) waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_killing_one_of_two_sharded_aggregators_hands_its_shards_over(
    tmp_path: Path, redis_url: str
) -> None:
    video = tmp_path / "line.avi"
    truths = write_synthetic_video(video, N_FRAMES, seed=3)
    write_truth_csv(tmp_path / "truth.csv", truths)
    agg = {"shards": SHARDS, "shard_lease_seconds": 1.5, "budget": BUDGET, "kappa": 4,
           "max_open_frames": 12, "claim_idle_seconds": 2.0, "sweep_seconds": 0.5}  # fmt: skip
    labelers = [{"id": lab, "backend": "simulated", "accuracy": a, "seed": 3}
                for lab, a in ACC.items()]  # fmt: skip
    # retention off: the labels streams are read whole at the end (it trims what the group
    # acknowledged, every 10 s, so a slow run lost the early entries)
    with pipeline(tmp_path, redis_url, aggregator=agg, labelers=labelers,
                  retention={"enabled": False}) as p:  # fmt: skip
        r, keys = p.client, Keys("gtx", shards=SHARDS)
        p.start("agg-a", "aggregator", "--consumer", "agg-a")
        p.start("agg-b", "aggregator", "--consumer", "agg-b")
        p.start("labelers", "labeler", *[x for lab in ACC for x in ("--id", lab)])
        p.wait_live(list(ACC))
        p.wait_until(lambda: sorted(map(str, owners(r, keys))) == ["agg-a"] * 2 + ["agg-b"] * 2,
                     "two shards each", 30)  # fmt: skip
        # a config with another count is refused, in one line, while the pipeline runs
        bad = tmp_path / "bad.toml"
        bad.write_text(p.config.read_text().replace(f"shards = {SHARDS}", "shards = 2"))
        assert "shards = 2" in bad.read_text()
        refused = subprocess.run(
            [sys.executable, "-m", "gtx_stream", "aggregator", "--config", str(bad)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip().count("\n") == 0
        assert "aggregator.shards is 2" in refused.stderr
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        p.wait_until(lambda: r.xlen(keys.final) >= 40, "40 frames final", 60)
        p.sup.kill("agg-b")  # kill -9, mid-run
        taken = _wait("agg-a to own every shard",
                      lambda: owners(r, keys) == ["agg-a"] * SHARDS, 20)  # fmt: skip
        _wait("the run to end", lambda: p.finished(), 120)
        assert p.sup.services["agg-a"].running, p.logs()
        opened = sorted(f["frame_id"] for s in keys.every_shard()
                        for _, f in r.xrange(s.opened))  # fmt: skip
        records = final_records(r, keys)
        labels = [(s.shard, LabelEntry.from_fields(decode_fields(f)))
                  for s in keys.every_shard() for _, f in r.xrange(s.labels)]  # fmt: skip
        applied = int(r.hget(keys.stats, "labels_applied") or 0)
        spent = int(r.hget(keys.budget, "spent") or 0)
        dead = r.xlen(keys.dead)
    print(
        f"shards taken over {taken:.2f} s after the kill; {len(records)} frames final, "
        f"{spent} labels spent of {BUDGET}"
    )
    assert taken < 10, f"shards taken over after {taken:.1f} s"
    assert len(opened) == len(set(opened)) > 40
    finals = sorted(f["frame_id"] for f in records)
    assert finals == opened, "lost or duplicated on the final stream"  # 0 lost, 0 duplicated
    assert dead == 0
    for f in records:
        labs = json.loads(f["labelers"])
        assert len(labs) == len(set(labs)), f  # no frame with two labels from one labeler
    assert sum(int(f["n_labels"]) for f in records) <= spent <= BUDGET
    # each label counted once, every counted label arrived, each on its frame's shard
    assert applied == sum(int(f["n_labels"]) for f in records)
    arrived = {(e.frame_id, e.labeler) for _, e in labels if not e.failed}
    assert {(f["frame_id"], lab) for f in records for lab in json.loads(f["labelers"])} <= arrived
    assert all(shard == shard_of(e.frame_id, SHARDS) for shard, e in labels)
