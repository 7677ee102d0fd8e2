"""Batched requests for machine labelers: labels/s, Redis commands and CPU per label, batch 16
against batch 1 in the same run.

Run:  .venv/bin/python benchmarks/bench_batch.py [--frames 2000] [--labelers 10]
          [--batch 16] [--pairs 2] [--max-open-frames 512] [--monitor] [--json]

Each run is the whole pipeline of ``bench_pipeline.py`` (a synthetic video, the ingester, the
aggregator and one labeler worker process per instant ``simulated`` labeler, each a separate
process) on a ``redis-server`` of the benchmark's own, with every labeler at ``batch = 1``
(the baseline) or ``batch = B``; the runs alternate, ``--pairs`` times. Nothing else differs:
same frames, same labelers, same ``aggregator.max_open_frames`` (raised from its default 64
so that enough requests wait per labeler for a batch to fill; both sizes get the same).

- labels/s: labels / (last ``finalised_at`` - first ``opened_at``), Redis timestamps of the
  final records, as ``bench_pipeline.py``;
- Redis commands per label: ``INFO commandstats`` summed over all commands, reset once every
  labeler is live and before the ingester starts, read when the last frame is final. It
  counts the commands that Lua scripts run as well as the ``EVALSHA`` itself (that is how
  the issue's 109 was counted). ``--monitor`` adds one more short run per size with
  ``MONITOR`` attached, to split the commands clients send from those scripts run;
- CPU per label: user + system CPU of each process (``/proc/<pid>/stat``) and of Redis
  (``INFO cpu``) over the same window, divided by the labels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_pipeline import _wait, finished_run  # noqa: E402

from gtx_stream.ops.demo import labeler_accuracies, write_config  # noqa: E402
from gtx_stream.ops.embedded import EmbeddedRedis  # noqa: E402
from gtx_stream.ops.supervisor import Supervisor  # noqa: E402
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv  # noqa: E402
from gtx_stream.store.keys import Keys  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _redis_cpu(r: redis.Redis) -> float:
    info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def run_pipeline(
    url: str, workdir: Path, n_frames: int, n_labelers: int, batch: int, max_open: int,
    monitor: bool = False,
) -> dict[str, Any]:  # fmt: skip
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    keys = Keys("bench")
    video = workdir / f"bench-{n_frames}.avi"
    if not video.exists():
        truths = write_synthetic_video(video, n_frames, seed=0)
        write_truth_csv(workdir / "truth.csv", truths)
    accuracies = labeler_accuracies(n_labelers, (0.8, 1.0), seed=0)
    config = workdir / "bench.toml"
    write_config(
        config,
        {"redis": {"url": url, "prefix": keys.prefix},
         "aggregator": {"tau": 0.99, "kappa": 5, "seed": 0, "max_open_frames": max_open}},
        [{"id": lab, "backend": "simulated", "accuracy": a, "seed": 0, "batch": batch}
         for lab, a in accuracies.items()],
    )  # fmt: skip
    sup = Supervisor(config=config, log_dir=workdir / f"logs-{batch}")
    ids = list(accuracies)
    lines: Counter[str] = Counter()
    watcher: threading.Thread | None = None
    try:
        sup.start("aggregator", "--log-level", "WARNING", "aggregator")
        for j, lab in enumerate(ids):
            sup.start(f"labeler-{j}", "--log-level", "WARNING", "labeler", "--id", lab)
        _wait(sup, lambda: set(ids) <= set(r.zrange(keys.live, 0, -1)), 60, "labelers live")
        time.sleep(0.5)  # RQ workers registered and blocking on their queues
        if monitor:
            watcher = threading.Thread(target=_count_monitor, args=(url, lines), daemon=True)
            watcher.start()
            time.sleep(0.2)
        pids = {name: svc.process.pid for name, svc in sup.services.items() if svc.process}
        cpu0 = {name: _cpu_seconds(pid) for name, pid in pids.items()}
        r.config_resetstat()
        redis0 = _redis_cpu(r)
        ingester = sup.start(
            "ingester", "ingest", str(video), "--truth", str(workdir / "truth.csv")
        )
        assert ingester.process is not None
        ingest_pid = ingester.process.pid
        seen = {"ingester": 0.0}

        def done() -> bool:
            # the ingester exits at the end of its input: its CPU is the last value read
            with contextlib.suppress(OSError, IndexError):
                seen["ingester"] = _cpu_seconds(ingest_pid)
            return bool(r.xlen(keys.final) >= n_frames)

        _wait(sup, done, 900, f"{n_frames} frames final")
        stats = r.info("commandstats")
        redis_cpu = _redis_cpu(r) - redis0
        cpu = {name: _cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        cpu["ingester"] = seen["ingester"]
        # the ingester exits by itself at the end of its input (with fast labelers the last
        # frame can be final before it has): let it, rather than stop it
        with contextlib.suppress(Exception):
            ingester.process.wait(timeout=30)
    finally:
        codes = sup.stop_all()
    records, span, n_labels = finished_run(r, keys, codes)
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    calls.pop("config|resetstat", None)
    calls.pop("info", None)  # the benchmark's own
    labeler_cpu = sum(v for k, v in cpu.items() if k.startswith("labeler-"))
    out: dict[str, Any] = {
        "batch": batch,
        "frames": len(records),
        "labels": n_labels,
        "seconds": span,
        "labels_per_s": n_labels / span,
        "commands_per_label": sum(calls.values()) / n_labels,
        # each RQ job is one BLMOVE (or LMOVE) off a labeler's queue
        "labels_per_rq_job": n_labels / max(1, calls.get("blmove", 0) + calls.get("lmove", 0)),
        "rq_job_keys_left": len(list(r.scan_iter("rq:job:*"))),
        "cpu_ms_per_label": {
            "aggregator": 1e3 * cpu["aggregator"] / n_labels,
            "labelers (all)": 1e3 * labeler_cpu / n_labels,
            "ingester": 1e3 * cpu["ingester"] / n_labels,
            "redis": 1e3 * redis_cpu / n_labels,
        },
        "top_commands_per_label": {
            k: round(v / n_labels, 2) for k, v in Counter(calls).most_common(12)
        },
    }
    out["cpu_ms_per_label"]["total"] = sum(out["cpu_ms_per_label"].values())
    if monitor:
        out["monitor"] = {
            "client_commands_per_label": lines["client"] / n_labels,
            "script_commands_per_label": lines["lua"] / n_labels,
        }
    return out


def _count_monitor(url: str, lines: Counter[str]) -> None:
    """Count MONITOR lines: commands that clients sent, and commands that scripts ran."""
    client = redis.Redis.from_url(url)
    with client.monitor() as m, contextlib.suppress(redis.ConnectionError):
        for event in m.listen():  # until the benchmark's server stops
            lines["lua" if event.get("client_type") == "lua" else "client"] += 1


def _phase(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=2000)
    ap.add_argument("--labelers", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=2, help="alternating runs of each size")
    ap.add_argument("--max-open-frames", type=int, default=512)
    ap.add_argument("--monitor", action="store_true", help="also split commands with MONITOR")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = ap.parse_args()
    runs: dict[int, list[dict[str, Any]]] = {1: [], args.batch: []}
    with EmbeddedRedis() as server, tempfile.TemporaryDirectory(prefix="gtx-bench-") as tmp:
        for pair in range(args.pairs):
            for batch in (1, args.batch):
                _phase(f"pair {pair + 1}: batch {batch}")
                run = run_pipeline(
                    server.url, Path(tmp), args.frames, args.labelers, batch, args.max_open_frames
                )
                runs[batch].append(run)
        monitored = {}
        if args.monitor:
            for batch in (1, args.batch):
                _phase(f"MONITOR run: batch {batch}")
                monitored[batch] = run_pipeline(server.url, Path(tmp), max(200, args.frames // 4),
                                                args.labelers, batch, args.max_open_frames,
                                                monitor=True)  # fmt: skip
    out: dict[str, Any] = {"args": vars(args), "runs": runs, "monitored": monitored,
                           "load_average": os.getloadavg()}  # fmt: skip
    base, new = runs[1], runs[args.batch]
    figures = ("labels_per_s", "commands_per_label")
    med = {
        b: {k: statistics.median(run[k] for run in rs) for k in figures} for b, rs in runs.items()
    }
    out["median"] = med
    out["ratio_labels_per_s"] = med[args.batch]["labels_per_s"] / med[1]["labels_per_s"]
    out["ratio_commands_per_label"] = (
        med[args.batch]["commands_per_label"] / med[1]["commands_per_label"]
    )
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{args.frames} frames, {args.labelers} instant simulated labelers, one process each, "
          f"max_open_frames {args.max_open_frames}")  # fmt: skip
    print(
        "run  batch  labels  seconds  labels/s  labels/job  commands/label  "
        "CPU ms/label (aggregator, labelers, ingester, redis = total)"
    )
    for i, (b1, bn) in enumerate(zip(base, new, strict=True)):
        for run in (b1, bn):
            c = run["cpu_ms_per_label"]
            print(f"{i + 1:3d}  {run['batch']:5d}  {run['labels']:6d}  {run['seconds']:7.2f}  "
                  f"{run['labels_per_s']:8.1f}  {run['labels_per_rq_job']:10.1f}  "
                  f"{run['commands_per_label']:14.1f}  "
                  f"{c['aggregator']:.2f}, {c['labelers (all)']:.2f}, {c['ingester']:.2f}, "
                  f"{c['redis']:.2f} = {c['total']:.2f}")  # fmt: skip
    print(
        f"median labels/s: batch 1 {med[1]['labels_per_s']:.1f}, batch {args.batch} "
        f"{med[args.batch]['labels_per_s']:.1f} (ratio {out['ratio_labels_per_s']:.2f})"
    )
    print(
        f"median commands/label: batch 1 {med[1]['commands_per_label']:.1f}, batch "
        f"{args.batch} {med[args.batch]['commands_per_label']:.1f} "
        f"(ratio {out['ratio_commands_per_label']:.2f})"
    )
    for b, rs in runs.items():
        print(f"batch {b} top commands per label (last run): {rs[-1]['top_commands_per_label']}")
    for b, run in monitored.items():
        m = run["monitor"]
        print(
            f"MONITOR, batch {b} ({run['frames']} frames): {m['client_commands_per_label']:.1f} "
            f"sent by clients + {m['script_commands_per_label']:.1f} run by scripts per label"
        )
    print(f"rq:job:* keys left: {[run['rq_job_keys_left'] for rs in runs.values() for run in rs]}")
    print(f"load average (1, 5, 15 min) at the end: {out['load_average']}")


if __name__ == "__main__":
    main()
