"""Load: 20 simulated people (HTTP clients with cookies) and 2 machine labelers label 500
frames together through the label server and the real aggregator."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis
from starlette.testclient import TestClient

from gtx_stream.server.app import build_app
from gtx_stream.server.state import ServerState
from gtx_stream.store.keys import Keys
from tests.server.load_sim import held_by, load_settings, run_load


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_twenty_people_and_two_machines_label_500_frames(raw: redis.Redis) -> None:
    keys = Keys()
    settings = load_settings(20)
    app = build_app(ServerState(raw, keys, settings))
    run = run_load(raw, keys, settings, lambda: TestClient(app), n_frames=500, timeout=100)
    assert not run.errors, run.errors[:5]
    final = [{k.decode(): v.decode() for k, v in f.items()} for _, f in raw.xrange(keys.final)]
    ids = Counter(rec["frame_id"] for rec in final)
    assert set(ids) == set(run.frames) and max(ids.values()) == 1  # every frame once
    assert raw.xlen(keys.dead) == 0
    by_frame = {rec["frame_id"]: rec for rec in final}
    for person, seen in run.seen.items():
        assert len(seen) == len(set(seen)), f"{person} saw a frame twice"
        for index in seen:  # only their own requests: the frame asked them
            assert person in held_by(raw, keys, f"load-{index}"), (person, index)
        labeled = {fid for fid, rec in by_frame.items() if person in json.loads(rec["labelers"])}
        assert labeled <= {f"load-{i}" for i in seen}
    people_labels = sum(len(s) for s in run.seen.values())
    assert people_labels > 100  # people did a good part of the work beside the machines
    assert len(run.seen) == 20 and all(run.seen.values())
