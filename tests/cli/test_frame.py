"""`gtx-stream frame ID`: one frame's hash, labels, requests, image, final record and dead
letters, for frames run by a real aggregator (tests/aggregator_harness.py) on a real Redis;
and the ACL user of docs/access.md that may run `frame` and `dead` but not `dead --requeue`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.core.records import FinalRecord, LabelEntry, RequestState, decode_fields
from gtx_stream.ops.inspect import inspect_frame
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests.aggregator_harness import (
    Capture,
    final_records,
    make_aggregator,
    open_frame,
    register,
    run_until_idle,
)
from tests.cli.conftest import Cli
from tests.store.test_access import start_server

ACC = {"alice": 0.9, "bob": 0.8, "carol": 0.85}


def _finished(r: redis.Redis, keys: Keys) -> str:
    """One frame run to the end: every labeler asked, bob's request failed (kappa 3, tau
    out of reach: it ends exhausted with alice's and carol's labels)."""
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, truth=1)
    cap = Capture()
    agg = make_aggregator(r, keys, cap, tau=0.9999, kappa=3, seed=5)
    run_until_idle(agg, r, keys, cap, ACC, failing=frozenset({"bob"}))
    return fid


def test_a_finalised_frame_shows_its_labels_requests_image_and_record(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    fid = _finished(r, keys)
    [record] = final_records(r, keys)
    code, out, err = cli("frame", fid, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["status"] == "final" and doc["final_from"] == "final stream"
    assert doc["final"]["labelers"] == json.loads(record["labelers"])
    assert [x["labeler"] for x in doc["labels"]] == doc["final"]["labelers"]
    assert [x["label"] for x in doc["labels"]] == doc["final"]["labels"]
    assert doc["frame"]["final_id"] == doc["final"]["entry_id"]
    assert doc["final"]["reason"] == "exhausted"
    requests = {q["labeler"]: q for q in doc["requests"]}
    assert sorted(requests) == sorted(ACC)
    assert requests["bob"]["state"] == "failed" and requests["bob"]["label"] is None
    stored = r.hgetall(keys.frame_requests(fid))
    for lab in ("alice", "carol"):
        done = requests[lab]
        assert done["state"] == "done"
        assert RequestState("done", done["entry_id"]).encode() == stored[lab]
        # the request id and time come from the label's own entry on the labels stream
        [(_, fields)] = r.xrange(keys.labels, done["entry_id"], done["entry_id"])
        entry = LabelEntry.from_fields(fields)
        assert (done["request_id"], done["label"], done["labeled_at"]) == (
            entry.request_id, entry.label, entry.labeled_at)  # fmt: skip
        assert done["request_id"]
    assert doc["image"]["present"] and doc["image"]["size"] == len(b"jpeg")
    assert 0 < doc["image"]["ttl_s"] <= 3600
    assert doc["dead"] == [] and doc["complete"] is True

    code, out, _ = cli("frame", fid)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"frame {fid}: final"
    assert "labels (2, in arrival order)" in lines and "requests (3)" in lines
    assert any(line.startswith("final  label ") and "reason exhausted" in line for line in lines)
    assert any(line.startswith("  bob ") and "failed  request " in line for line in lines)
    assert any(line.startswith(f"image  {keys.image(fid)}  4 bytes, kept ") for line in lines)
    assert "None" not in out and "nan" not in out


def test_a_done_request_whose_labels_entry_was_trimmed_shows_the_frames_label(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    # retention trims applied labels within seconds: every done request had read
    # "request -  entry ...  label - at -", as if its label were unknown
    fid = _finished(r, keys)
    kept = dict(cast(Any, [json.loads(x) for x in r.lrange(keys.frame_labels(fid), 0, -1)]))
    r.xtrim(keys.labels, maxlen=0)
    code, out, _ = cli("frame", fid, "--json")
    requests = {q["labeler"]: q for q in json.loads(out)["requests"]}
    for lab in ("alice", "carol"):
        assert requests[lab]["entry_trimmed"] is True
        assert requests[lab]["label"] == kept[lab] and requests[lab]["request_id"] == ""
    code, out, _ = cli("frame", fid)
    lines = [line for line in out.splitlines() if line.startswith("  alice ")]
    assert lines == [f"  alice  done    label {kept['alice']}  entry "
                     f"{requests['alice']['entry_id']} (trimmed from the labels stream: its "
                     "request id and time are gone)"]  # fmt: skip


def test_a_late_request_of_a_finalised_frame_is_not_said_to_still_count(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    fid = _finished(r, keys)
    r.hset(keys.frame_requests(fid), "bob", RequestState("late", "rid-1").encode())
    code, out, _ = cli("frame", fid)
    assert code == 0
    [bob] = [line for line in out.splitlines() if line.startswith("  bob ")]
    # a label that comes now is dead-lettered "frame already finalised"
    assert (
        bob == "  bob    late    request rid-1  lease ran out; the frame was finalised without it"
    )


def test_an_open_frame_shows_its_outstanding_request_and_lease(
    r: redis.Redis, keys: Keys, cli: Cli
) -> None:
    register(r, keys, ACC)
    fid = open_frame(r, keys, 3, truth=0)
    cap = Capture()
    make_aggregator(r, keys, cap, lease_seconds=30.0).step(block_ms=1)
    [req] = cap.pending
    code, out, _ = cli("frame", fid, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "open" and doc["final"] is None and doc["labels"] == []
    [view] = doc["requests"]
    assert (view["labeler"], view["state"], view["request_id"]) == (
        req.labeler_id, "out", req.request_id)  # fmt: skip
    assert time.time() < view["lease_deadline"] <= time.time() + 30
    code, out, _ = cli("frame", fid)
    assert f"out     request {req.request_id}  lease ends in " in out
    assert "final  -" in out.splitlines()


def test_a_frame_whose_keys_expired_is_found_on_the_final_stream(
    r: redis.Redis, keys: Keys
) -> None:
    fid = _finished(r, keys)
    [(entry_id, fields)] = cast(Any, r.xrange(keys.final))
    r.delete(keys.frame(fid), keys.frame_labels(fid), keys.frame_requests(fid))
    report = inspect_frame(r, keys, fid)
    assert report.state is None and report.status == "final"
    assert report.final == FinalRecord.from_fields(decode_fields(fields), entry_id=entry_id)
    # not found among the newest one: the search says it stopped short
    r.xadd(keys.final, {"frame_id": "other", "label": "1", "reason": "kappa"})
    short = inspect_frame(r, keys, fid, scan_limit=1)
    assert short.final is None and not short.complete


def test_a_trimmed_final_record_is_read_from_the_frame_hash(r: redis.Redis, keys: Keys) -> None:
    fid = _finished(r, keys)
    [(entry_id, fields)] = cast(Any, r.xrange(keys.final))
    r.xdel(keys.final, entry_id)
    report = inspect_frame(r, keys, fid)
    assert report.final_from == "frame hash"
    assert report.final == FinalRecord.from_fields(decode_fields(fields), entry_id=entry_id)


def test_a_dropped_frame_shows_its_dead_letter(r: redis.Redis, keys: Keys, cli: Cli) -> None:
    fid = open_frame(r, keys, 0, truth=1)
    r.delete(keys.frame(fid), keys.image(fid))  # its state expired while open
    assert ScriptRunner(r).run_one(frame_scripts.drop_frame(keys, fid, "frame state expired"))
    code, out, _ = cli("frame", fid, "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["status"] == "dropped" and doc["frame"] is None
    [letter] = doc["dead"]
    assert (letter["kind"], letter["reason"]) == ("frame", "frame state expired")
    assert doc["image"] == {"key": keys.image(fid), "size": 0, "ttl_s": None, "present": False}


def test_a_frame_nobody_knows_is_one_line_and_exit_1(r: redis.Redis, cli: Cli) -> None:
    code, out, err = cli("frame", "nope-1")
    assert (code, out) == (1, "")
    assert err == "gtx-stream frame: no frame 'nope-1' under prefix 'gtx'\n"


@pytest.mark.redis
def test_the_reader_may_look_inside_but_not_requeue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The users of docs/access.md: gtx-reader runs `frame` and `dead`; `dead --requeue`
    needs the administrator, and the reader's attempt changes nothing."""
    server = start_server(tmp_path, tls=False)
    try:
        admin = server.admin()
        keys = Keys("gtx")
        fid = _finished(admin, keys)
        admin.xadd(keys.dead, {"kind": "label", "reason": "unknown labeler (not registered)",
                               "payload": json.dumps({"frame_id": fid, "labeler": "x",
                                                      "label": "1"})})  # fmt: skip
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("GTX_REDIS__URL", server.url("gtx-reader"))
        admin.acl_log_reset()
        assert main(["frame", fid]) == 0
        assert main(["frame", fid, "--json"]) == 0
        assert main(["dead"]) == 0
        assert admin.acl_log() == []  # nothing refused
        capsys.readouterr()
        before = admin.xrange(keys.dead)
        assert main(["dead", "--requeue"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("redis error: ") and "no permissions" in err
        assert err.count("\n") == 1
        assert admin.xrange(keys.dead) == before
        monkeypatch.setenv("GTX_REDIS__URL", server.url("default"))
        assert main(["dead", "--requeue"]) == 0
        assert "not re-queued 1: labeler still not registered" in capsys.readouterr().out
    finally:
        server.embedded.stop()
