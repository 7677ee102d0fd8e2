"""Fault injection against the running pipeline, and the checks that follow it.

:func:`run_chaos` starts a private Redis (append-only file, ``appendfsync everysec``) and the
real services as separate processes (:class:`gtx_stream.ops.supervisor.Supervisor`): one
ingester reading a synthetic video, labeler workers (seeded simulated labelers, plus the two
``python`` labelers of :mod:`tests.chaos_labelers`: one that hangs on some frames, one that
always answers after its lease), and an aggregator, with a second aggregator on the same
consumer group for part of the run. While frames flow it follows a seeded schedule of faults:

- SIGKILL of an aggregator, a labeler worker or the ingester, restarted after a short random
  pause, as a supervisor (docker compose's ``restart: unless-stopped``) would;
- a Redis restart by SIGKILL on the same port and data folder (a crash of the server process:
  what it had written to its append-only file survives in the page cache);
- a Redis restart that also cuts the append-only file back to its size ``lost_window``
  seconds before the kill: what a crash of the whole machine can do with ``appendfsync
  everysec``, where the writes of the last second were not yet on disk.

Any service that exits by itself is restarted too, and reported. When the schedule is done,
the pipeline runs to the end of the video; then :func:`check_streams` reads the streams and
the budget and checks the invariants (see its docstring), and :func:`format_report` prints
what happened.

A :class:`Watcher` thread follows the streams during the run (XREAD), so that whatever the
machine-crash restart took away can be named entry by entry: the checks allow for exactly
those entries, and nothing else.

Retention runs too (every second), and so does its removal of dead aggregators' consumers:
the checks' own consumer group (:data:`CHECKER_GROUP`) never reads, so retention, which never
trims an entry a group has not acknowledged, leaves the streams whole for the checks.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import redis

from gtx_stream.config import ExportSettings
from gtx_stream.core.models import aggregate
from gtx_stream.core.records import LabelEntry, RecordError
from gtx_stream.ops.demo import labeler_accuracies, write_config
from gtx_stream.ops.embedded import EmbeddedRedis
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.export.check import check_folder
from gtx_stream.pipeline.export.manifest import MANIFEST, parse_lines
from gtx_stream.store.keys import Keys
from tests import chaos_labelers

ROOT = Path(__file__).resolve().parents[1]

KILL_AGGREGATOR = "kill aggregator"
KILL_LABELER = "kill labeler worker"
KILL_INGESTER = "kill ingester"
KILL_EXPORTER = "kill exporter"
REDIS_RESTART = "restart redis (SIGKILL)"
REDIS_CRASH = "restart redis (machine crash: AOF cut back)"
KILLS = (KILL_AGGREGATOR, KILL_LABELER, KILL_INGESTER, KILL_EXPORTER)
EXPORT_GROUP = ExportSettings().group
CHECKER_GROUP = "chaos-checker"  # holds every entry of labels and opened against retention


@dataclass
class ChaosOptions:
    seed: int = 20261128
    frames: int = 400
    simulated_labelers: int = 6
    alpha_range: tuple[float, float] = (0.75, 0.95)
    method: str = "gtx"
    tau: float = 0.99
    kappa: int = 5
    prior: float = 0.5
    lease_seconds: float = 1.5
    max_open_frames: int = 12
    kills: int = 24
    """SIGKILLs of services; the two Redis restarts come on top."""
    kill_weights: tuple[float, float, float, float] = (0.35, 0.3, 0.2, 0.15)
    """Aggregator, labeler worker, ingester, exporter."""
    gap: tuple[float, float] = (0.5, 1.5)
    """Seconds between faults."""
    restart_delay: tuple[float, float] = (0.0, 0.8)
    redis_down: tuple[float, float] = (0.3, 1.0)
    lost_window: float = 2.0
    """Seconds of writes the machine-crash restart takes away: with ``appendfsync everysec``
    Redis fsyncs once a second, and postpones a write while an fsync is still running (up to
    two seconds), so two seconds is the worst case."""
    second_aggregator: tuple[float, float] = (0.15, 0.65)
    """Part of the fault schedule (fractions) during which two aggregators run."""
    redis_restart_at: float = 0.35
    redis_crash_at: float = 0.75
    drain_timeout: float = 120.0

    @property
    def budget(self) -> int:
        """Finite, and larger than the run needs."""
        return self.frames * (self.kappa + 2)


@dataclass
class Fault:
    at: float  # seconds since the faults began
    kind: str
    target: str
    note: str = ""


@dataclass
class Seen:
    """A stream entry the watcher read during the run."""

    at: float  # time.monotonic() when read
    fields: dict[str, str]


class Watcher(threading.Thread):
    """Reads every entry of the four streams as it comes, and the AOF's size every 0.1 s."""

    def __init__(self, url: str, keys: Keys, aof_dir: Path) -> None:
        super().__init__(name="chaos-watcher", daemon=True)
        self.url = url
        self.streams = (keys.opened, keys.labels, keys.final, keys.dead)
        self.aof_dir = aof_dir
        self.seen: dict[str, dict[str, Seen]] = {s: {} for s in self.streams}
        self.aof_sizes: list[tuple[float, Path, int]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def aof_file(self) -> Path | None:
        """The incremental append-only file Redis writes to now (highest sequence number)."""
        files = sorted(self.aof_dir.glob("*.incr.aof"), key=lambda p: int(p.name.split(".")[-3]))
        return files[-1] if files else None

    def size_before(self, moment: float) -> tuple[float, Path, int] | None:
        with self.lock:
            older = [s for s in self.aof_sizes if s[0] <= moment]
        return older[-1] if older else None

    def run(self) -> None:
        client = redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=2.0)
        last = dict.fromkeys(self.streams, "0-0")
        sampled = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            if now - sampled >= 0.1:
                path = self.aof_file()
                if path is not None:
                    try:
                        size = path.stat().st_size
                    except OSError:
                        pass
                    else:
                        with self.lock:
                            self.aof_sizes.append((now, path, size))
                sampled = now
            try:
                resp = client.xread(cast(Any, last), count=1000, block=100)
            except redis.RedisError:
                time.sleep(0.05)
                continue
            at = time.monotonic()
            for stream, items in cast(list[Any], resp or []):
                for entry_id, fields in items:
                    self.seen[stream][entry_id] = Seen(at, dict(fields))
                    last[stream] = entry_id
        client.close()


@dataclass
class ChaosResult:
    error: str | None
    """Why the run stopped early (a wait that timed out), or None."""
    options: ChaosOptions
    faults: list[Fault]
    findings: Findings
    seconds_faults: float
    seconds_total: float
    two_aggregators: tuple[float, float] | None
    unplanned_exits: dict[str, list[tuple[int, str]]]
    """service -> (exit status, last line of its log) of each exit on its own"""
    exit_codes: dict[str, int | None]
    crash: CrashLoss | None
    stats: dict[str, str]
    final_label: dict[str, str]
    faults_while_ingesting: int

    @property
    def fault_counts(self) -> Counter[str]:
        return Counter(f.kind for f in self.faults)


@dataclass
class CrashLoss:
    """What the machine-crash restart took away, as the watcher saw it."""

    cut_bytes: int
    cut_at: float  # monotonic time of the AOF size the file was cut back to
    killed_at: float
    lost: dict[str, dict[str, Seen]]  # stream -> entry id -> entry

    def lost_labels(self) -> set[tuple[str, str, int]]:
        """(frame, labeler, label) of every lost labels-stream entry (failure reports aside)."""
        out = set()
        for seen in self.lost.get("labels", {}).values():
            entry = _label_entry(seen.fields)
            if entry is not None and entry.label is not None:
                out.add((entry.frame_id, entry.labeler, entry.label))
        return out


# --- the run ---------------------------------------------------------------------------------


class Harness:
    def __init__(self, workdir: Path, opts: ChaosOptions) -> None:
        self.workdir = workdir
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.keys = Keys("gtx")
        self.redis = EmbeddedRedis(
            data_dir=workdir / "redis",
            appendonly=True,
            # one incremental AOF for the whole run, so that it can be cut back
            extra_args=["--auto-aof-rewrite-percentage", "0"],
        )
        self.faults: list[Fault] = []
        self.restarts: dict[str, float] = {}  # service -> when to start it again
        self.killed: set[str] = set()  # killed on purpose, restart pending
        self.unplanned: dict[str, list[tuple[int, str]]] = {}
        self.ingester_done = False
        self.ingester_done_at: float | None = None
        self.commands: dict[str, tuple[str, ...]] = {}
        self.crash: CrashLoss | None = None
        self.stopped: set[str] = set()  # stopped on purpose (SIGTERM), not to be restarted
        self.t0 = 0.0

    # configuration and services

    def labelers(self) -> list[dict[str, Any]]:
        o = self.opts
        acc = labeler_accuracies(o.simulated_labelers, o.alpha_range, o.seed)
        sim: list[dict[str, Any]] = [
            {"id": lab, "backend": "simulated", "accuracy": a, "seed": o.seed}
            for lab, a in acc.items()
        ]
        return [
            *sim,
            {"id": "hang", "backend": "python", "target": "tests.chaos_labelers:hang",
             "accuracy": chaos_labelers.HANG_ACCURACY, "timeout": 10.0},
            {"id": "late", "backend": "python", "target": "tests.chaos_labelers:late",
             "accuracy": chaos_labelers.LATE_ACCURACY, "timeout": 10.0},
        ]  # fmt: skip

    def write_inputs(self) -> None:
        o = self.opts
        self.video = self.workdir / "chaos.avi"
        truths = write_synthetic_video(self.video, o.frames, seed=o.seed)
        self.truth_csv = self.workdir / "truth.csv"
        write_truth_csv(self.truth_csv, truths)
        labelers = self.labelers()
        self.dataset = self.workdir / "dataset"
        self.config = self.workdir / "chaos.toml"
        write_config(
            self.config,
            {
                "redis": {"url": self.redis.url, "prefix": self.keys.prefix},
                "aggregator": {
                    "method": o.method,
                    "tau": o.tau,
                    "kappa": o.kappa,
                    "prior": o.prior,
                    "budget": o.budget,
                    "seed": o.seed,
                    "lease_seconds": o.lease_seconds,
                    "max_open_frames": o.max_open_frames,
                    "claim_idle_seconds": 1.0,
                    "sweep_seconds": 0.5,
                    "live_seconds": 3.0,
                    "batch_size": 64,
                    "block_ms": 100,
                },
                "retention": {"every_seconds": 1.0},
            },  # fmt: skip
            labelers,
        )
        sim = [lab["id"] for lab in labelers if lab["backend"] == "simulated"]
        half = len(sim) // 2
        self.commands = {
            "aggregator-1": ("aggregator",),
            "labelers-a": ("labeler", *[x for lab in sim[:half] for x in ("--id", lab)]),
            "labelers-b": ("labeler", *[x for lab in sim[half:] for x in ("--id", lab)]),
            "labeler-hang": ("labeler", "--id", "hang"),
            "labeler-late": ("labeler", "--id", "late"),
            "ingester": ("ingest", str(self.video), "--truth", str(self.truth_csv)),
            "aggregator-2": ("aggregator",),
            "exporter": ("export", "--out", str(self.dataset), "--follow"),
        }

    def start(self, name: str) -> None:
        self.sup.start(name, *self.commands[name])

    def now(self) -> float:
        return time.monotonic() - self.t0

    def running(self, prefix: str) -> list[str]:
        return sorted(n for n, s in self.sup.services.items() if n.startswith(prefix) and s.running)

    # faults

    def kill(self, kind: str) -> None:
        o = self.opts
        if kind == KILL_INGESTER and self.ingester_done:
            kind = self.rng.choice((KILL_AGGREGATOR, KILL_LABELER))
        prefix = {KILL_AGGREGATOR: "aggregator", KILL_LABELER: "labeler",
                  KILL_INGESTER: "ingester", KILL_EXPORTER: "exporter"}  # fmt: skip
        targets = self.running(prefix[kind])
        if not targets:
            self.faults.append(Fault(self.now(), kind, "-", "nothing running to kill"))
            return
        name = self.rng.choice(targets)
        self.sup.kill(name)
        self.killed.add(name)
        self.restarts[name] = time.monotonic() + self.rng.uniform(*o.restart_delay)
        self.faults.append(Fault(self.now(), kind, name))

    def restart_redis(self, crash: bool) -> None:
        o = self.opts
        killed_at = time.monotonic()
        self.redis.kill()
        note = ""
        if crash:
            kept = self.watcher.size_before(killed_at - o.lost_window)
            if kept is None:
                note = "no AOF size sample old enough: nothing cut"
            else:
                cut_at, path, size = kept
                current = path.stat().st_size
                os.truncate(path, size)
                self.crash = CrashLoss(current - size, cut_at, killed_at, {})
                note = f"AOF {path.name} cut from {current} to {size} bytes"
        time.sleep(self.rng.uniform(*o.redis_down))
        self.redis.start(timeout=30.0)
        self.faults.append(
            Fault(killed_at - self.t0, REDIS_CRASH if crash else REDIS_RESTART, "redis", note)
        )

    def supervise(self) -> None:
        """Restart what was killed once its pause is over, and whatever exited by itself."""
        now = time.monotonic()
        for name, svc in list(self.sup.services.items()):
            if name in self.killed or name in self.stopped or svc.running or name in self.restarts:
                continue
            code = svc.returncode
            if name == "ingester" and code == 0:
                if not self.ingester_done:
                    self.ingester_done = True
                    self.ingester_done_at = now
                continue
            if code is None:
                continue
            last = (svc.tail(1).strip() or "-")[:160]
            self.unplanned.setdefault(name, []).append((code, last))
            self.restarts[name] = now + 0.5
        for name, due in list(self.restarts.items()):
            if now >= due:
                del self.restarts[name]
                self.killed.discard(name)
                if name in self.stopped:
                    continue
                self.start(name)

    def run(self) -> ChaosResult:
        self.redis.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            return self._run()
        finally:
            self.redis.stop()

    def _run(self) -> ChaosResult:
        o = self.opts
        started = time.monotonic()
        self.redis.start()
        url = self.redis.url
        self.write_inputs()
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5.0)
        for stream in (self.keys.opened, self.keys.labels):
            self.client.xgroup_create(stream, CHECKER_GROUP, id="0", mkstream=True)
        self.watcher = Watcher(url, self.keys, self.redis.data_dir / "appendonlydir")
        self.watcher.start()
        self.sup = Supervisor(
            config=self.config,
            log_dir=self.workdir / "logs",
            env={
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
                )
            },
        )
        second: tuple[float, float] | None = None
        error = None
        seconds_faults = 0.0
        try:
            for name in ("aggregator-1", "labelers-a", "labelers-b", "labeler-hang",
                         "labeler-late", "ingester", "exporter"):  # fmt: skip
                self.start(name)
            self.wait(lambda: self._int(self.client.xlen(self.keys.final)) > 0, "a first frame", 60)
            schedule = self.schedule()
            total = schedule[-1][0]
            a2_from, a2_to = (x * total for x in o.second_aggregator)
            self.t0 = time.monotonic()
            a2_started = a2_stopped = None
            while schedule or self.restarts:
                now = self.now()
                if a2_started is None and now >= a2_from:
                    self.start("aggregator-2")
                    a2_started = now
                if a2_started is not None and a2_stopped is None and now >= a2_to:
                    self.stopped.add("aggregator-2")
                    self.restarts.pop("aggregator-2", None)
                    self.sup.stop("aggregator-2")
                    a2_stopped = now
                if schedule and now >= schedule[0][0]:
                    _, kind = schedule.pop(0)
                    if kind in KILLS:
                        self.kill(kind)
                    else:
                        self.restart_redis(crash=kind == REDIS_CRASH)
                self.supervise()
                time.sleep(0.02)
            if a2_started is not None:
                second = (a2_started, a2_stopped if a2_stopped is not None else self.now())
            seconds_faults = self.now()
            self.wait(self.finished, "the end of the video, every frame finalised", o.drain_timeout)
            self.drain()
            self.wait(self.exported, "the exporter to export every final record", 60)
        except TimeoutError as err:  # checked and reported like the rest
            error = str(err)
        finally:
            codes = self.sup.stop_all(timeout=10)
            self.watcher.stop.set()
            self.watcher.join(timeout=5)
        if self.crash is not None:
            self.crash.lost = lost_entries(self.client, self.watcher.seen)
        elif lost := lost_entries(self.client, self.watcher.seen):
            # no entry may go missing without a machine crash
            self.crash = CrashLoss(0, 0.0, 0.0, lost)
        findings = check_streams(
            self.client, self.keys, o.method, o.prior,
            self.crash.lost_labels() if self.crash else set(),
        )  # fmt: skip
        if self.crash is not None:
            reopened = {f.get("frame_id") for _, f in _entries(self.client, self.keys.opened)}
            findings.never_reopened = [
                fid for fid in frames_in(list(self.crash.lost.get("opened", {}).values()))
                if fid not in reopened
            ]  # fmt: skip
        check_dataset(self.client, self.keys, self.dataset, findings)
        final_label = {f["frame_id"]: f["label"] for _, f in _entries(self.client, self.keys.final)}
        stats = {str(k): str(v) for k, v in self.client.hgetall(self.keys.stats).items()}
        self.client.close()
        return ChaosResult(
            error=error,
            options=o,
            faults=self.faults,
            findings=findings,
            seconds_faults=seconds_faults,
            seconds_total=time.monotonic() - started,
            two_aggregators=second,
            unplanned_exits=self.unplanned,
            exit_codes=codes,
            crash=self.crash,
            stats=stats,
            final_label=final_label,
            faults_while_ingesting=sum(
                1 for f in self.faults
                if self.ingester_done_at is None or f.at + self.t0 < self.ingester_done_at
            ),
        )  # fmt: skip

    def schedule(self) -> list[tuple[float, str]]:
        o = self.opts
        t = 0.0
        events: list[tuple[float, str]] = []
        for _ in range(o.kills):
            t += self.rng.uniform(*o.gap)
            events.append((t, self.rng.choices(KILLS, weights=o.kill_weights)[0]))
        events += [(o.redis_restart_at * t, REDIS_RESTART), (o.redis_crash_at * t, REDIS_CRASH)]
        return sorted(events)

    @staticmethod
    def _int(x: Any) -> int:
        return int(x or 0)

    def wait(self, predicate: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.supervise()
            try:
                if predicate():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out ({timeout:.0f} s) waiting for {what}")
            time.sleep(0.1)

    def finished(self) -> bool:
        return self.ingester_done and self.client.zcard(self.keys.open_frames) == 0

    def exported(self) -> bool:
        """The exporter's group has read and acknowledged the whole final stream."""
        last = self.client.xinfo_stream(self.keys.final)["last-generated-id"]
        for group in cast(list[Any], self.client.xinfo_groups(self.keys.final)):
            if group["name"] == EXPORT_GROUP:
                return not group["pending"] and group["last-delivered-id"] == last
        return False

    def drain(self) -> None:
        """Stop the labeler workers, then let the aggregator read every label they sent."""
        for name in list(self.sup.services):
            if name.startswith("labeler"):
                self.stopped.add(name)
                self.sup.stop(name)

        def all_read() -> bool:
            last = self.client.xinfo_stream(self.keys.labels)["last-generated-id"]
            for group in cast(list[Any], self.client.xinfo_groups(self.keys.labels)):
                if group["name"] == CHECKER_GROUP:
                    continue
                if group["pending"] or group["last-delivered-id"] != last:
                    return False
            return True

        self.wait(all_read, "the aggregator to read every label", 30)


def lost_entries(
    client: redis.Redis, seen: dict[str, dict[str, Seen]]
) -> dict[str, dict[str, Seen]]:
    """Entries the watcher read during the run that the streams no longer hold."""
    out: dict[str, dict[str, Seen]] = {}
    for stream, entries in seen.items():
        present = {e for e, _ in cast(list[Any], client.xrange(stream))}
        gone = {e: s for e, s in entries.items() if e not in present}
        if gone:
            out[stream.rsplit(":", 1)[-1]] = gone
    return out


def run_chaos(workdir: Path, opts: ChaosOptions | None = None) -> ChaosResult:
    return Harness(workdir, opts or ChaosOptions()).run()


# --- the checks ------------------------------------------------------------------------------


@dataclass
class Findings:
    frames_opened: int = 0
    frames_final: int = 0
    frames_dead: int = 0
    frames_open_at_end: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    label_entries: int = 0
    labels_failed: int = 0
    """Failure reports: each settles (and refunds) its request, and is never counted."""
    labels_counted: int = 0
    labels_dead: int = 0
    dead_reasons: Counter[str] = field(default_factory=Counter)
    dead_letters_repeated: int = 0
    counted_entry_lost: int = 0
    never_reopened: list[str] = field(default_factory=list)
    by_labeler: dict[str, Counter[str]] = field(default_factory=dict)
    posteriors_checked: int = 0
    budget_limit: int | None = None
    budget_spent: int = 0
    images_on_disk: int = 0
    images_missing: Counter[str] = field(default_factory=Counter)
    """Manifest rows of frames whose image was gone, by why."""
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.problems)


def _label_entry(fields: dict[str, str]) -> LabelEntry | None:
    """The entry as the aggregator reads it, or None when it is malformed."""
    try:
        return LabelEntry.from_fields(fields)
    except RecordError:
        return None


def _entries(client: redis.Redis, stream: str) -> list[tuple[str, dict[str, str]]]:
    return [(_s(i), {_s(k): _s(v) for k, v in f.items()})
            for i, f in cast(list[Any], client.xrange(stream))]  # fmt: skip


def check_streams(
    client: redis.Redis,
    keys: Keys,
    method: str,
    prior: float,
    lost_labels: Iterable[tuple[str, str, int]] = (),
) -> Findings:
    """Check the pipeline's invariants from its streams (and the budget hash) alone.

    1. Every frame on the ``opened`` stream is on ``final`` exactly once, or (not on ``final``)
       once on ``dead`` as a frame with a reason; nothing is finalised that was not opened, and
       nothing is still open.
    2. No final record holds two labels of one labeler; its lists agree with ``n_labels``.
    3. Every entry of the ``labels`` stream is counted in its frame's final record, or is on
       ``dead`` (by entry id) with a reason; for each (frame, labeler), the entries not
       dead-lettered number exactly as many as the record counts (0 or 1), with the same label.
       A counted label without such an entry is a duplicate, unless it is one of
       ``lost_labels`` (an entry that a machine crash of Redis took away after it was read).
       A failure report (``status = failed``) is never counted: it settles its request.
    4. ``spent <= limit``; labels counted <= spent; (frame, labeler) pairs that sent a label
       <= spent (the budget counts labels obtained or outstanding, a failure is given back).
    5. Each record's ``p1``, ``confidence`` and ``label`` equal :func:`aggregate` of the
       record's ``labels`` and ``accuracies`` (bit for bit).
    """
    out = Findings()
    excused = set(lost_labels)
    opened = [f.get("frame_id", "") for _, f in _entries(client, keys.opened)]
    final = _entries(client, keys.final)
    dead = _entries(client, keys.dead)
    labels = _entries(client, keys.labels)
    out.frames_opened = len(set(opened))
    out.frames_open_at_end = int(client.zcard(keys.open_frames))

    # 1. frames
    for fid, n in Counter(opened).items():
        if n > 1:
            out.duplicated.append(f"frame {fid} opened {n} times")
    final_n = Counter(f.get("frame_id", "") for _, f in final)
    dead_frames: Counter[str] = Counter()
    dead_labels: Counter[str] = Counter()
    for _, d in dead:
        reason = d.get("reason", "")
        if not reason:
            out.problems.append(f"dead letter without a reason: {d}")
        if d.get("kind") == "frame":
            dead_frames[json.loads(d.get("payload", "{}")).get("frame_id", "")] += 1
        elif d.get("kind") == "label":
            dead_labels[d.get("entry_id", "")] += 1
            out.dead_reasons[reason.split(":")[0]] += 1
    out.frames_final = len(final_n)
    out.frames_dead = len(dead_frames)
    for fid in set(opened):
        nf, nd = final_n.get(fid, 0), dead_frames.get(fid, 0)
        if nf + nd == 0:
            out.lost.append(f"frame {fid}: opened, neither final nor dead")
        elif nf + nd > 1:
            out.duplicated.append(f"frame {fid}: final {nf} times, dead {nd} times")
    for fid in set(final_n) | set(dead_frames):
        if fid not in opened:
            out.problems.append(f"frame {fid}: final or dead, never opened")
    if out.frames_open_at_end:
        out.problems.append(f"{out.frames_open_at_end} frames still open at the end")

    # 2. and 5. final records
    counted: dict[tuple[str, str], int] = {}
    for _, rec in final:
        fid = rec.get("frame_id", "")
        out.reasons[rec.get("reason", "")] += 1
        try:
            labelers = json.loads(rec["labelers"])
            values = json.loads(rec["labels"])
            accuracies = json.loads(rec["accuracies"])
        except (KeyError, ValueError) as err:
            out.problems.append(f"frame {fid}: unreadable record ({err}): {rec}")
            continue
        if not len(labelers) == len(values) == len(accuracies) == int(rec.get("n_labels", -1)):
            out.problems.append(f"frame {fid}: labelers, labels, accuracies, n_labels disagree")
        for lab, n in Counter(labelers).items():
            if n > 1:
                out.duplicated.append(f"frame {fid}: {n} labels of labeler {lab}")
        for lab, value in zip(labelers, values, strict=False):
            counted[(fid, lab)] = int(value)
        out.labels_counted += len(values)
        post = aggregate(rec.get("method", method), [values], [accuracies], prior=prior)
        want = (repr(float(post.p1[0])), repr(float(post.confidence[0])), str(int(post.label[0])))
        got = (rec.get("p1"), rec.get("confidence"), rec.get("label"))
        if want != got:
            out.problems.append(f"frame {fid}: posterior (p1, confidence, label) {got}, "
                                f"the core math gives {want}")  # fmt: skip
        out.posteriors_checked += 1

    # 3. labels
    out.label_entries = len(labels)
    by_pair: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for entry_id, f in labels:
        entry = _label_entry(f)
        key = (f.get("frame_id", ""), f.get("labeler", ""))
        tally = out.by_labeler.setdefault(key[1], Counter())
        tally["entries"] += 1
        if dead_labels.get(entry_id):
            tally["dead"] += 1
        if entry is not None and entry.failed:
            tally["failed"] += 1
            out.labels_failed += 1
            continue
        by_pair.setdefault(key, []).append((entry_id, "" if entry is None else str(entry.label)))
    label_ids = {e for e, _ in labels}
    out.labels_dead = sum(1 for e in dead_labels if e in label_ids)
    out.dead_letters_repeated = sum(n - 1 for n in dead_labels.values() if n > 1)
    for key in set(by_pair) | set(counted):
        fid, lab = key
        entries = by_pair.get(key, [])
        kept = [(e, v) for e, v in entries if not dead_labels.get(e)]
        c = 1 if key in counted else 0
        if c:
            out.by_labeler.setdefault(lab, Counter())["counted"] += 1
        if len(kept) > c:
            for e, _ in kept[c:]:
                out.lost.append(f"label entry {e} ({fid}, {lab}): neither counted nor dead")
        elif len(kept) < c:
            if (fid, lab, counted[key]) in excused:
                out.counted_entry_lost += 1
            else:
                out.duplicated.append(f"({fid}, {lab}): counted with no labels entry left")
        elif c and kept[0][1] != str(counted[key]):
            out.problems.append(f"({fid}, {lab}): entry says {kept[0][1]}, "
                                f"record counts {counted[key]}")  # fmt: skip

    # 4. budget
    budget = {_s(k): int(v) for k, v in client.hgetall(keys.budget).items()}
    out.budget_limit = budget.get("limit")
    out.budget_spent = budget.get("spent", 0)
    if out.budget_limit is not None and out.budget_spent > out.budget_limit:
        out.problems.append(f"budget overspent: {out.budget_spent} > {out.budget_limit}")
    if out.labels_counted > out.budget_spent:
        out.problems.append(f"{out.labels_counted} labels counted, {out.budget_spent} paid for")
    if len(by_pair) > out.budget_spent:
        out.problems.append(f"{len(by_pair)} (frame, labeler) pairs answered, "
                            f"{out.budget_spent} requests paid for")  # fmt: skip
    return out


def check_dataset(client: redis.Redis, keys: Keys, root: Path, out: Findings) -> None:
    """Invariant 8: every frame on ``final`` is in the exported folder's manifest exactly
    once, with its image on disk (or recorded as missing, with why), and the folder passes
    ``gtx-stream export --check``; no frame is in the manifest that was not finalised."""
    final = {f.get("frame_id", "") for _, f in _entries(client, keys.final)}
    path = root / MANIFEST
    rows = parse_lines(path.read_bytes(), str(path))[0] if path.is_file() else []
    in_manifest = Counter(r["frame_id"] for r in rows)
    for fid in sorted(final - set(in_manifest)):
        out.lost.append(f"frame {fid}: final, not in the exported manifest")
    for fid, n in in_manifest.items():
        if n > 1:
            out.duplicated.append(f"frame {fid}: {n} rows in the exported manifest")
        if fid not in final:
            out.problems.append(f"frame {fid}: exported, not on the final stream")
    out.images_on_disk = sum(1 for p in root.glob("*/*/*.jpg"))
    ok = sum(1 for r in rows if r.get("image_status") == "ok")
    out.images_missing = Counter(r.get("image_note", "")[:60] for r in rows
                                 if r.get("image_status") == "missing")  # fmt: skip
    if out.images_on_disk != ok:
        out.problems.append(f"{out.images_on_disk} images on disk, {ok} manifest rows say ok")
    out.problems += [f"export --check: {p}" for p in check_folder(root)]


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


# --- the report ------------------------------------------------------------------------------


def _counts(c: Counter[str] | dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"


def format_report(res: ChaosResult) -> str:
    o, f = res.options, res.findings
    kinds = res.fault_counts
    lines = [
        f"chaos run, seed {o.seed}: {o.frames} frames, {o.simulated_labelers} simulated "
        f"labelers + hang + late, lease {o.lease_seconds:g} s, {res.seconds_faults:.1f} s of "
        f"faults, {res.seconds_total:.1f} s in all",
        f"faults injected: {len(res.faults)} ({_counts(kinds)}); "
        f"{res.faults_while_ingesting} of them while the ingester was reading",
    ]
    if res.two_aggregators:
        a, b = res.two_aggregators
        lines.append(f"two aggregators on one consumer group: from {a:.1f} s to {b:.1f} s")
    for fault in res.faults:
        if fault.kind in (REDIS_RESTART, REDIS_CRASH):
            lines.append(
                f"  {fault.at:5.1f} s  {fault.kind}" + (f": {fault.note}" if fault.note else "")
            )
    lines.append("services that exited by themselves (restarted as a supervisor would): "
                 + (_counts({k: len(v) for k, v in res.unplanned_exits.items()})
                    if res.unplanned_exits else "none"))  # fmt: skip
    for name, exits in sorted(res.unplanned_exits.items()):
        lines += [f"  {name} exit {code}: {last}" for code, last in exits]
    lines += [
        f"frames: opened {f.frames_opened}, final {f.frames_final}, dead {f.frames_dead}, "
        f"open at the end {f.frames_open_at_end}; reasons: {_counts(f.reasons)}",
        f"labels: {f.label_entries} entries ({f.labels_failed} failure reports), "
        f"{f.labels_counted} counted in final records, "
        f"{f.labels_dead} dead-lettered ({_counts(f.dead_reasons)}); "
        f"dead letters repeated for one entry: {f.dead_letters_repeated}",
        "per labeler (entries/counted/dead/failed): "
        + ", ".join(
            f"{lab} {c['entries']}/{c['counted']}/{c['dead']}/{c['failed']}"
            for lab, c in sorted(f.by_labeler.items())
        ),  # fmt: skip
        f"leases expired: {res.stats.get('leases_expired', '0')}; budget: spent "
        f"{f.budget_spent} of {f.budget_limit}",
        f"exported: {f.images_on_disk} images on disk; missing images: {_counts(f.images_missing)}",
        f"posteriors recomputed with the core math: {f.posteriors_checked}, "
        f"{'all equal' if not any('posterior' in p for p in f.problems) else 'MISMATCH'}",
    ]
    if res.crash is not None:
        c = res.crash
        lost = {k: len(v) for k, v in c.lost.items()}
        lines.append(f"machine-crash restart: {c.cut_bytes} bytes of AOF cut; entries lost: "
                     f"{_counts(lost)}")  # fmt: skip
        lines.extend("  " + x for x in describe_crash(res))
    codes = Counter(res.exit_codes.values())
    lines.append(
        "exit status after SIGTERM at the end: "
        + ", ".join(f"{code} ({n} services)" for code, n in sorted(codes.items(), key=str))
    )
    if res.error:
        lines.append(f"RUN STOPPED EARLY: {res.error}")
    lines += [
        f"lost: {len(f.lost)}"
        + (
            f" (and {len(f.never_reopened)} frames opened in the machine crash's lost second, "
            "never opened again)"
            if f.never_reopened
            else ""
        ),
        f"duplicated: {len(f.duplicated)}",
    ]
    for name, items in (("lost", f.lost), ("duplicated", f.duplicated), ("problem", f.problems)):
        lines += [f"  {name}: {x}" for x in items[:20]]
        if len(items) > 20:
            lines.append(f"  ... {len(items) - 20} more")
    return "\n".join(lines)


def describe_crash(res: ChaosResult) -> list[str]:
    """What became of each entry the machine crash took away."""
    c = res.crash
    assert c is not None
    out = []
    opened_lost = c.lost.get("opened", {})
    if opened_lost:
        ids = frames_in(list(opened_lost.values()))
        gone = res.findings.never_reopened
        out.append(
            f"frames whose opening was lost: {len(ids)} ({', '.join(ids)}); "
            f"opened again: {len(ids) - len(gone)}; never opened again: {len(gone)}"
        )
    final_lost = c.lost.get("final", {})
    if final_lost:
        same = sum(1 for s in final_lost.values() if res.final_label.get(
            s.fields.get("frame_id", "")) == s.fields.get("label"))  # fmt: skip
        out.append(f"final records taken back: {len(final_lost)}; each frame finalised again, "
                   f"with the same label: {same}")  # fmt: skip
    labels_lost = c.lost.get("labels", {})
    if labels_lost:
        out.append(f"labels lost: {len(labels_lost)}; counted although their entry was lost: "
                   f"{res.findings.counted_entry_lost}")  # fmt: skip
    window = [s.at for stream in c.lost.values() for s in stream.values()]
    if window and c.killed_at:
        out.append(
            f"lost entries were read from {min(window) - c.killed_at:+.2f} s to "
            f"{max(window) - c.killed_at:+.2f} s of the kill (AOF cut back to "
            f"{c.cut_at - c.killed_at:+.2f} s)"
        )
    return out


def frames_in(seen: Sequence[Seen]) -> list[str]:
    return sorted({s.fields.get("frame_id", "") for s in seen})
