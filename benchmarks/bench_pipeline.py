"""Frames finalised per second through the whole pipeline, against RQ's own rate.

Run:  .venv/bin/python benchmarks/bench_pipeline.py [--frames 400] [--labelers 10]
                                                    [--processes N] [--jobs 2000]

Pipeline: a synthetic video of N frames, the ingester, labeler workers (instant ``simulated``
labelers, ``--processes`` RQ SimpleWorker processes serving them; default one per labeler) and
the aggregator, each a separate process, on one Redis. The rate is measured on the Redis
timestamps of the final records: N / (last ``finalised_at`` - first ``opened_at``), so process
start-up is not counted. Every label is one RQ job.

Baseline, same run, same Redis: RQ on its own. M trivial jobs (``os.getpid``, JSONSerializer,
``result_ttl=0``) are enqueued, then one ``SimpleWorker`` in burst mode (in this process) runs
them all: jobs/s, measured before and after the pipeline (the mean is the baseline). The same
for RQ's forking ``Worker`` (a fork per job), and for as many ``rq worker`` SimpleWorker
processes as the pipeline has labeler processes, already waiting when the jobs are enqueued.
Enqueue-to-start latency: jobs enqueued one at a time to a waiting ``rq worker``, spaced out
so none waits for another; RQ's own ``started_at - enqueued_at``, median and p99.

The figure that matters is labels/s through the pipeline / RQ trivial jobs/s: near 1 means
the pipeline is bound by RQ, not by its own code. Afterwards it counts ``rq:job:*`` keys: a
finished job must leave none behind.

Cost per label, over the pipeline run (from once every labeler is live, the counters reset
then, to the last frame final): Redis commands per label (``INFO commandstats``, all commands,
those Lua scripts run included; the benchmark's own INFO, CONFIG RESETSTAT and polls taken
out), and CPU per label of each process (user + system, ``/proc/<pid>/stat``: the
aggregator, the ingester from its first frame opened, each labeler process) and of Redis
(``INFO cpu``), with ``bench_batch.py``'s helpers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import redis
from rq import Queue, SimpleWorker, Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import BaseWorker

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gtx_stream.ops.demo import labeler_accuracies, write_config  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.ops.supervisor import Supervisor  # noqa: E402
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402

# --- the pipeline ----------------------------------------------------------------------------


def run_pipeline(
    url: str, workdir: Path, n_frames: int, n_labelers: int, processes: int
) -> dict[str, Any]:
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    keys = Keys("bench")
    video = workdir / "bench.avi"
    truths = write_synthetic_video(video, n_frames, seed=0)
    write_truth_csv(workdir / "truth.csv", truths)
    accuracies = labeler_accuracies(n_labelers, (0.8, 1.0), seed=0)
    config = workdir / "bench.toml"
    write_config(
        config,
        {"redis": {"url": url, "prefix": keys.prefix},
         "aggregator": {"tau": 0.99, "kappa": 5, "seed": 0}},
        [{"id": lab, "backend": "simulated", "accuracy": a, "seed": 0}
         for lab, a in accuracies.items()],
    )  # fmt: skip
    # bench_batch imports this module at its top: its helpers are imported here, not there
    from bench_batch import _cpu_seconds, _redis_cpu

    sup = Supervisor(config=config, log_dir=workdir / "logs")
    ids = list(accuracies)
    polls = {"xlen": 0, "hget": 0}
    seen = {"ingester": 0.0, "ingester_start": -1.0}

    def done() -> bool:
        # the ingester exits at the end of its input: its CPU is the last value read; its
        # start-up (imports, opening the video) is what it had spent by its first frame
        with contextlib.suppress(OSError, IndexError):
            seen["ingester"] = _cpu_seconds(ingest_pid)
        if seen["ingester_start"] < 0:
            polls["hget"] += 1
            if r.hget(keys.stats, "frames_opened"):
                seen["ingester_start"] = seen["ingester"]
        polls["xlen"] += 1
        return bool(r.xlen(keys.final) >= n_frames)

    try:
        sup.start("aggregator", "--log-level", "WARNING", "aggregator")
        share = -(-len(ids) // processes)
        for j in range(processes):
            mine = ids[j * share : (j + 1) * share]
            if mine:
                sup.start(f"labeler-{j}", "--log-level", "WARNING", "labeler",
                          *(x for lab in mine for x in ("--id", lab)))  # fmt: skip
        _wait(sup, lambda: set(ids) <= set(r.zrange(keys.live, 0, -1)), 60, "labelers live")
        time.sleep(0.5)  # warm-up: RQ workers registered and blocking on their queues
        pids = {name: svc.process.pid for name, svc in sup.services.items() if svc.process}
        cpu0 = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        r.config_resetstat()
        redis0 = _redis_cpu(r)
        ingester = sup.start("ingester", "ingest", str(video), "--truth",
                             str(workdir / "truth.csv"))  # fmt: skip
        assert ingester.process is not None
        ingest_pid = ingester.process.pid
        _wait(sup, done, 600, f"{n_frames} frames final")
        stats = r.info("commandstats")
        redis_cpu = _redis_cpu(r) - redis0
        cpu = {name: _cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        start_up = max(0.0, seen["ingester_start"])
        cpu["ingester"] = seen["ingester"] - start_up
    finally:
        codes = sup.stop_all()
    records, span, n_labels = finished_run(r, keys, codes)
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    for own in ("config|resetstat", "info"):
        calls.pop(own, None)
    for name, n in polls.items():
        calls[name] = calls.get(name, 0) - n
    per_process = {name: 1e3 * c / n_labels for name, c in sorted(cpu.items())}
    per_process["redis"] = 1e3 * redis_cpu / n_labels
    return {
        "commands_per_label": sum(calls.values()) / n_labels,
        "top_commands_per_label": {
            k: round(v / n_labels, 2) for k, v in Counter(calls).most_common(10)
        },
        "cpu_ms_per_label": per_process,
        "ingester_start_up_cpu_s": start_up,
        "frames": len(records),
        "labels": n_labels,
        "seconds": span,
        "frames_per_s": len(records) / span,
        "labels_per_s": n_labels / span,
        "labeler_processes": sum(1 for name in sup.services if name.startswith("labeler-")),
        "rq_job_keys_left": len(list(r.scan_iter("rq:job:*"))),
        "rq_result_keys_left": len(list(r.scan_iter("rq:results:*"))),
    }


def finished_run(
    r: redis.Redis, keys: Keys, codes: dict[str, int | None]
) -> tuple[list[dict[str, str]], float, int]:
    """After a run: its final records, the seconds from the first frame opened to the last
    finalised, and the labels used; SystemExit when a service failed or anything is dead."""
    records: list[dict[str, str]] = [f for _, f in cast(list[Any], r.xrange(keys.final))]
    if any(c not in (0, None) for c in codes.values()):
        raise SystemExit(f"a service failed: {codes}")
    if r.xlen(keys.dead):
        raise SystemExit(f"{r.xlen(keys.dead)} dead letters")
    span = max(float(f["finalised_at"]) for f in records) - min(
        float(f["opened_at"]) for f in records
    )
    return records, span, sum(int(f["n_labels"]) for f in records)


def _wait(sup: Supervisor, done: Any, timeout: float, what: str, poll: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        failed = sup.failed()
        if failed:
            raise SystemExit(f"{failed[0].name} failed:\n{failed[0].tail()}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll)


# --- RQ on its own ---------------------------------------------------------------------------


def _enqueue_trivial(r: redis.Redis, queue: Queue, n: int) -> list[str]:
    """Enqueue ``n`` no-op jobs in batches of 500; return their keys."""
    pipe = r.pipeline(transaction=False)
    datas = [Queue.prepare_data("os.getpid", result_ttl=0) for _ in range(n)]
    keys = []
    for start in range(0, n, 500):
        jobs = queue.enqueue_many(datas[start : start + 500], pipeline=pipe)
        pipe.execute()
        keys += [job.key for job in jobs]
    return keys


def rq_trivial_rate(url: str, n_jobs: int, worker_class: type[BaseWorker]) -> float:
    """Jobs/s of one burst worker of ``worker_class`` on ``n_jobs`` pre-enqueued no-op jobs."""
    r = redis.Redis.from_url(url)
    queue = Queue("bench-rq", connection=r, serializer=JSONSerializer)
    _enqueue_trivial(r, queue, n_jobs)
    worker = worker_class([queue], connection=r, serializer=JSONSerializer)
    t0 = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - t0
    assert queue.count == 0
    return n_jobs / seconds


def _rq_workers(url: str, queue: str, n: int, worker_class: str) -> list[subprocess.Popen]:
    """``n`` RQ worker processes (the ``rq worker`` command) waiting on ``queue``."""
    rq = str(Path(sys.executable).parent / "rq")
    cmd = [rq, "worker", "-u", url, "-w", worker_class, "-S", "json", "-q", queue]
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL) for _ in range(n)]
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 60
    while len(Worker.all(connection=r, queue=Queue(queue, connection=r))) < n:
        if time.monotonic() > deadline:
            raise SystemExit(f"{n} rq workers did not start")
        time.sleep(0.05)
    return procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def rq_parallel_rate(url: str, n_jobs: int, processes: int) -> float:
    """Jobs/s of ``processes`` SimpleWorker processes, already waiting, on one queue."""
    r = redis.Redis.from_url(url)
    queue = Queue("bench-rq-parallel", connection=r, serializer=JSONSerializer)
    procs = _rq_workers(url, queue.name, processes, "rq.SimpleWorker")
    try:
        t0 = time.perf_counter()
        keys = _enqueue_trivial(r, queue, n_jobs)
        # result_ttl=0: a job's key goes when it has run
        while r.exists(*keys):
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
    finally:
        _stop(procs)
    return n_jobs / seconds


def rq_latency(url: str, n_jobs: int, worker_class: str, gap: float) -> tuple[float, float]:
    """Median and p99 enqueue-to-start of jobs enqueued one at a time to a waiting worker.

    RQ's own timestamps (``enqueued_at``, ``started_at``), kept by a ``result_ttl`` for the
    reading. ``gap`` seconds between jobs, more than one job takes, so none waits for another.
    """
    r = redis.Redis.from_url(url)
    queue = Queue("bench-rq-latency", connection=r, serializer=JSONSerializer)
    procs = _rq_workers(url, queue.name, 1, worker_class)
    try:
        jobs = []
        for _ in range(n_jobs):
            jobs.append(queue.enqueue("os.getpid", result_ttl=600))
            time.sleep(gap)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = Job.fetch_many([j.id for j in jobs], connection=r, serializer=JSONSerializer)
            if all(j is not None and j.get_status() == JobStatus.FINISHED for j in done):
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"latency jobs on {worker_class} did not finish")
    finally:
        _stop(procs)
    lat = sorted(
        (j.started_at - j.enqueued_at).total_seconds()
        for j in done
        if j is not None and j.started_at and j.enqueued_at
    )
    for j in jobs:
        j.delete()
    return statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]


# --- report ----------------------------------------------------------------------------------


def _phase(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main() -> None:
    logging.getLogger("rq").setLevel(logging.WARNING)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--labelers", type=int, default=10)
    ap.add_argument("--processes", type=int, help="labeler worker processes (default: labelers)")
    ap.add_argument("--jobs", type=int, default=2000, help="trivial RQ jobs per baseline run")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    processes = args.processes or args.labelers
    out: dict[str, Any] = {"frames": args.frames, "labelers": args.labelers}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory(prefix="gtx-bench-") as tmp:
        url = server.url
        r = redis.Redis.from_url(url)
        r.flushdb()
        _phase("RQ SimpleWorker, trivial jobs")
        out["rq_simple_jobs_per_s_before"] = rq_trivial_rate(url, args.jobs, SimpleWorker)
        _phase("pipeline")
        out["pipeline"] = run_pipeline(url, Path(tmp), args.frames, args.labelers, processes)
        r.flushdb()
        _phase("RQ SimpleWorker again, forking Worker, parallel SimpleWorkers")
        out["rq_simple_jobs_per_s_after"] = rq_trivial_rate(url, args.jobs, SimpleWorker)
        out["rq_fork_jobs_per_s"] = rq_trivial_rate(url, max(200, args.jobs // 10), Worker)
        out["rq_simple_parallel_jobs_per_s"] = rq_parallel_rate(url, args.jobs, processes)
        out["rq_trivial_job_keys_left"] = len(list(r.scan_iter("rq:job:*")))
        out["load_average"] = os.getloadavg()
        _phase("RQ enqueue-to-start latency")
        out["rq_simple_latency_s"] = rq_latency(url, 100, "rq.SimpleWorker", 0.02)
        out["rq_fork_latency_s"] = rq_latency(url, 40, "rq.Worker", 0.15)
    simple = (out["rq_simple_jobs_per_s_before"] + out["rq_simple_jobs_per_s_after"]) / 2
    pipe = out["pipeline"]
    out["ratio_labels_per_s_to_rq_simple"] = pipe["labels_per_s"] / simple
    out["ratio_labels_per_s_to_rq_parallel"] = (
        pipe["labels_per_s"] / out["rq_simple_parallel_jobs_per_s"]
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    s50, s99 = out["rq_simple_latency_s"]
    f50, f99 = out["rq_fork_latency_s"]
    lines = [
        f"pipeline: {pipe['frames']} frames, {pipe['labels']} labels in {pipe['seconds']:.2f} s "
        f"({args.labelers} labelers, {pipe['labeler_processes']} labeler processes)",
        f"  frames finalised/s                  {pipe['frames_per_s']:8.1f}",
        f"  labels/s (one RQ job each)          {pipe['labels_per_s']:8.1f}",
        f"  Redis commands per label            {pipe['commands_per_label']:8.1f}  (top: "
        f"{pipe['top_commands_per_label']})",
        "  CPU ms per label: "
        + ", ".join(f"{name} {ms:.2f}" for name, ms in pipe["cpu_ms_per_label"].items())
        + f" (total {sum(pipe['cpu_ms_per_label'].values()):.2f}; the ingester's from its first "
        f"frame, its start-up {pipe['ingester_start_up_cpu_s']:.2f} s CPU apart)",
        f"RQ trivial jobs/s, 1 SimpleWorker     {simple:8.1f}  (before "
        f"{out['rq_simple_jobs_per_s_before']:.1f}, after {out['rq_simple_jobs_per_s_after']:.1f})",
        f"RQ trivial jobs/s, 1 forking Worker   {out['rq_fork_jobs_per_s']:8.1f}",
        f"RQ trivial jobs/s, {processes:2d} SimpleWorkers   "
        f"{out['rq_simple_parallel_jobs_per_s']:8.1f}",
        f"RQ enqueue-to-start, SimpleWorker     median {1e3 * s50:.2f} ms, p99 {1e3 * s99:.2f} ms",
        f"RQ enqueue-to-start, forking Worker   median {1e3 * f50:.2f} ms, p99 {1e3 * f99:.2f} ms",
        f"ratio pipeline labels/s / 1 SimpleWorker jobs/s:   "
        f"{out['ratio_labels_per_s_to_rq_simple']:.2f}",
        f"ratio pipeline labels/s / {processes} SimpleWorkers jobs/s: "
        f"{out['ratio_labels_per_s_to_rq_parallel']:.2f}",
        f"rq:job:* keys left after the run: pipeline {pipe['rq_job_keys_left']} "
        f"(rq:results:* {pipe['rq_result_keys_left']}), trivial jobs "
        f"{out['rq_trivial_job_keys_left']}",
        f"load average (1, 5, 15 min) at the end: {out['load_average']}",
    ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
