"""Graceful shutdown of every service, as real processes in the middle of a run.

SIGTERM (a service manager stopping it) or SIGINT (Ctrl-C) make a labeler worker, the
aggregator and the ingester finish what they hold, acknowledge it and exit 0 within a few
seconds; the frames the ingester had opened are then finished by the other services.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any, cast

import pytest
from rq import Queue, Worker
from rq.registry import FailedJobRegistry, StartedJobRegistry

from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.aggregate.aggregator import GROUP
from tests.pipeline_fixtures import (
    Pipeline,
    check_final_records,
    final_records,
    pipeline,
    stream_entries,
)

N_FRAMES = 400  # more than the run gets through before the ingester is stopped
TAU = 0.99
KAPPA = 5
ACCURACIES = {"ann": 0.9, "bob": 0.85, "cid": 0.8, "dee": 0.75}
EXIT_WITHIN = 10.0  # seconds: "a few seconds", with room for a loaded CI machine


def _finalised(p: Pipeline) -> int:
    return int(p.client.xlen(p.keys.final))


def _signal_and_wait(p: Pipeline, name: str, sig: signal.Signals) -> float:
    """Send ``sig`` to service ``name``; its exit status must be 0 within EXIT_WITHIN s."""
    proc = p.sup.services[name].process
    assert proc is not None and proc.poll() is None, f"{name} is not running\n{p.logs()}"
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(EXIT_WITHIN)
    except Exception as err:  # subprocess.TimeoutExpired
        raise AssertionError(f"{name} still running {EXIT_WITHIN} s after {sig.name}") from err
    assert code == 0, f"{name} exited with {code} on {sig.name}\n{p.logs()}"
    return time.monotonic() - sent


def _pending(p: Pipeline, stream: str, consumer: str) -> list[Any]:
    return cast(
        list[Any],
        p.client.xpending_range(stream, GROUP, "-", "+", 1000, consumername=consumer),
    )


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_each_service_stops_cleanly_mid_run_and_nothing_is_lost(
    tmp_path: Path, redis_url: str, sig: signal.Signals
) -> None:
    video = tmp_path / "line.avi"
    truths = write_synthetic_video(video, N_FRAMES, seed=11)
    write_truth_csv(tmp_path / "truth.csv", truths)
    labelers = [
        {"id": lab, "backend": "simulated", "accuracy": a, "seed": 11}
        for lab, a in ACCURACIES.items()
    ]
    # a lease longer than the test: a request lost by a stopping service is never re-asked,
    # and its frame never finalised
    agg = {"tau": TAU, "kappa": KAPPA, "max_open_frames": 6, "lease_seconds": 600}
    with pipeline(tmp_path, redis_url, prefix="stop", aggregator=agg, labelers=labelers) as p:
        p.start("agg-1", "aggregator", "--consumer", "agg-1")
        # two workers serving the same labelers (a scaled-out labeler service)
        w1 = p.start("labeler-1", "labeler", "--all")
        p.start("labeler-2", "labeler", "--all")
        p.wait_aggregator_group()
        p.wait_live(list(ACCURACIES))
        p.start("ingester", "ingest", str(video), "--truth", str(tmp_path / "truth.csv"))
        stopped = ("labeler-1", "agg-1", "ingester")

        # 1. a labeler worker: finishes the job in hand, deregisters from RQ
        p.wait_until(lambda: _finalised(p) >= 10, "10 frames final", 60, allow_exit=stopped)
        took = {"labeler-1": _signal_and_wait(p, "labeler-1", sig)}
        assert w1.process is not None
        workers = Worker.all(connection=p.client)
        assert not [w.name for w in workers if w.name.endswith(f":{w1.process.pid}")]

        # 2. the aggregator: finishes its batch and acknowledges it; a second one carries on
        done = _finalised(p)
        p.wait_until(lambda: _finalised(p) >= done + 10, "10 more", 60, allow_exit=stopped)
        took["agg-1"] = _signal_and_wait(p, "agg-1", sig)
        for stream in (p.keys.labels, p.keys.opened):
            assert _pending(p, stream, "agg-1") == [], f"agg-1 left entries pending on {stream}"
        p.start("agg-2", "aggregator", "--consumer", "agg-2")

        # 3. the ingester, mid-video: stops opening frames; the others finish the open ones
        done = _finalised(p)
        p.wait_until(lambda: _finalised(p) >= done + 10, "10 more", 60, allow_exit=stopped)
        took["ingester"] = _signal_and_wait(p, "ingester", sig)
        opened = int(p.client.hget(p.keys.stats, "frames_opened") or 0)
        assert opened < N_FRAMES, "the ingester had finished the video before the signal"
        p.wait_until(lambda: p.finished(opened), "every opened frame final", 60, allow_exit=stopped)

        records = final_records(p.client, p.keys)
        labels_stream = stream_entries(p.client, p.keys.labels)
        dead = int(p.client.xlen(p.keys.dead))
        expired = int(p.client.hget(p.keys.stats, "leases_expired") or 0)
        queues = [Queue(p.keys.queue(lab), connection=p.client) for lab in ACCURACIES]
        failed_jobs = sum(FailedJobRegistry(queue=q).count for q in queues)
        started_jobs = sum(StartedJobRegistry(queue=q).count for q in queues)
        ingest_log = p.sup.services["ingester"].log_path.read_text()
        codes = p.sup.stop_all()

    assert set(codes.values()) == {0}, codes
    assert "stopped: stop" in ingest_log
    # every opened frame finalised exactly once, every label counted once, no job lost
    assert sorted(int(f["frame_index"]) for f in records) == list(range(opened))
    assert dead == 0
    check_final_records(records, TAU, KAPPA)
    counted = sorted((f["frame_id"], lab) for f in records for lab in json.loads(f["labelers"]))
    assert counted == sorted((e["frame_id"], e["labeler"]) for e in labels_stream)
    assert failed_jobs == 0 and started_jobs == 0
    assert expired == 0
    print(f"\n{sig.name}: exit 0 after " + ", ".join(f"{k} {v:.2f} s" for k, v in took.items()))
