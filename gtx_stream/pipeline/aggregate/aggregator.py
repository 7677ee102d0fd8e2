"""The aggregator: applies labels to frames once, decides, dispatches and finalises.

One loop, all state in Redis (so a restarted or a second aggregator continues exactly):

1. read a batch from the ``labels`` and ``opened`` streams through the consumer group
   (and, now and then, claim what a dead consumer left pending);
2. apply each label with ``apply_label.lua``; whatever cannot be applied goes to ``dead``;
3. decide every touched frame with the core math (:func:`gtx_stream.core.models.aggregate`,
   :func:`gtx_stream.core.decision.decide`): finalise (``finalise.lua``) or ask one more labeler
   (``ask.lua``, then an RQ job);
4. acknowledge the batch in one XACK per stream.

Every second it also expires leases that ran out and re-decides open frames with nothing
outstanding, which heals any step a crash cut short.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import redis

from gtx_stream.config import AggregatorSettings
from gtx_stream.core.decision import Decision, decide
from gtx_stream.core.draws import labeler_order
from gtx_stream.core.models import aggregate
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import script_source

log = logging.getLogger(__name__)

GROUP = "aggregator"
SCRIPTS = ("apply_labels", "ask", "expire_request", "finalise", "drop_frame")

Request = tuple[str, str, str]
"""(labeler id, frame id, request id)"""
Enqueue = Callable[[redis.Redis, Keys, Sequence[Request], float], None]
MAX_LABEL_PAYLOAD = 4096  # bytes; anything bigger is garbage, not a label
RECONNECT_FIRST = 0.1  # seconds before the first retry when Redis is unreachable, doubling
RECONNECT_MAX = 2.0


def lease_member(frame_id: str, labeler_id: str) -> str:
    return f"{frame_id}|{labeler_id}"


def request_id(frame_id: str, labeler_id: str) -> str:
    """One request per (frame, labeler): labelers are drawn without replacement."""
    return f"{frame_id}.{labeler_id}".replace(":", "_")


@dataclass
class FrameView:
    """What the aggregator reads of one open frame to decide about it."""

    frame_id: str
    meta: dict[str, str]
    labels: list[tuple[str, int]]
    requests: dict[str, str]

    @property
    def n_labels(self) -> int:
        return len(self.labels)

    @property
    def outstanding(self) -> int:
        return sum(1 for v in self.requests.values() if v == "out")

    def allowed(self, registered: Iterable[str]) -> list[str]:
        """Registered labelers allowed on this frame (a replayed task: those who labeled it)."""
        allowed = set(registered)
        if "eligible" in self.meta:
            allowed &= set(json.loads(self.meta["eligible"]))
        return sorted(allowed)

    def eligible(self, registered: Iterable[str]) -> list[str]:
        """Allowed labelers never asked about this frame."""
        return [lab for lab in self.allowed(registered) if lab not in self.requests]


@dataclass
class BatchReport:
    labels_read: int = 0
    applied: int = 0
    dead: int = 0
    finalised: int = 0
    asked: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class Aggregator:
    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        settings: AggregatorSettings,
        consumer: str | None = None,
        lease_seconds: float | None = None,
        enqueue: Enqueue | None = None,
    ) -> None:
        self.r = client
        self.keys = keys
        self.s = settings
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_seconds = lease_seconds or settings.lease_seconds
        self._enqueue = enqueue or _enqueue_rq_jobs
        self._sha: dict[str, str] = {}
        self._load_scripts()
        self._accuracies: dict[str, float] = {}
        self._accuracies_at = 0.0
        self._last_sweep = 0.0
        self._last_claim = 0.0
        self._claim_cursor = {keys.labels: "0-0", keys.opened: "0-0"}

    # -- scripts --------------------------------------------------------------------------

    def _load_scripts(self) -> None:
        for name in SCRIPTS:
            self._sha[name] = _s(self.r.script_load(script_source(name)))

    def _run_scripts(self, calls: Sequence[tuple[str, list[str], list[Any]]]) -> list[Any]:
        """Run script calls in one pipelined round trip of EVALSHA.

        After a Redis restart the scripts are gone (NOSCRIPT): load them again and retry. Every
        script is safe to run twice (a redelivered label, a stale ask or finalise is refused).
        """
        if not calls:
            return []
        for attempt in range(2):
            pipe = self.r.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(self._sha[name], len(keys), *keys, *args)
            try:
                return cast(list[Any], pipe.execute())
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self._load_scripts()
        raise AssertionError("unreachable")

    # -- set-up ---------------------------------------------------------------------------

    def setup(self, budget: int | None = None) -> None:
        """Create the consumer group on both streams and set the budget limit."""
        for stream in (self.keys.labels, self.keys.opened):
            try:
                self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as err:
                if "BUSYGROUP" not in str(err):
                    raise
        limit = self.s.budget if budget is None else budget
        if limit > 0:
            self.r.hset(self.keys.budget, "limit", limit)
        else:
            self.r.hdel(self.keys.budget, "limit")

    # -- main loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Process batches until ``stop`` is set (finishing the batch in hand)."""
        stop = stop or threading.Event()
        wait = RECONNECT_FIRST
        while not stop.is_set():
            try:
                self.step()
            except (redis.ConnectionError, redis.TimeoutError) as err:
                # Redis restarting or unreachable: the batch in hand was not acknowledged, so it
                # stays pending and is claimed again once Redis is back (XAUTOCLAIM).
                log.warning("redis unavailable (%s): retrying in %.1f s", err, wait)
                stop.wait(wait)
                wait = min(wait * 2, RECONNECT_MAX)
                continue
            wait = RECONNECT_FIRST

    def step(self, block_ms: int | None = None) -> BatchReport:
        report = BatchReport()
        now = time.time()
        entries: list[tuple[str, str, dict[str, str]]] = []
        if now - self._last_claim >= self.s.claim_idle_seconds / 2:
            entries += self._claim()
            self._last_claim = now
        resp = self.r.xreadgroup(
            GROUP,
            self.consumer,
            {self.keys.labels: ">", self.keys.opened: ">"},
            count=self.s.batch_size,
            block=self.s.block_ms if block_ms is None else block_ms,
        )
        for stream, items in cast(list[Any], resp or []):
            for entry_id, fields in items:
                entries.append(
                    (_s(stream), _s(entry_id), {_s(k): _s(v) for k, v in fields.items()})
                )
        views: dict[str, FrameView] = {}
        touched = self._process(entries, report, views)
        if time.time() - self._last_sweep >= self.s.sweep_seconds:
            touched |= self._expire_leases()
            touched |= set(_s(f) for f in self.r.zrange(self.keys.open_frames, 0, -1))
            self._last_sweep = time.time()
        if touched:
            self._decide(sorted(touched), report, views)
        self._ack(entries, progress=bool(report.applied or report.finalised or report.asked))
        return report

    def _claim(self) -> list[tuple[str, str, dict[str, str]]]:
        """Take over entries that a dead consumer read but never acknowledged."""
        out = []
        idle_ms = int(self.s.claim_idle_seconds * 1000)
        for stream in (self.keys.labels, self.keys.opened):
            cursor, items, *_ = self.r.xautoclaim(
                stream, GROUP, self.consumer, idle_ms, self._claim_cursor[stream],
                count=self.s.batch_size,
            )  # fmt: skip
            self._claim_cursor[stream] = _s(cursor)
            for entry_id, fields in items:
                if fields is None:  # deleted from the stream meanwhile
                    continue
                out.append((stream, _s(entry_id), {_s(k): _s(v) for k, v in fields.items()}))
        if out:
            log.info("claimed %d pending entries from dead consumers", len(out))
        return out

    def _ack(self, entries: Sequence[tuple[str, str, dict[str, str]]], progress: bool) -> None:
        """One round trip: XACK per stream, and the progress stamp that ``status --check``
        reads when the step applied, finalised or asked anything."""
        by_stream: dict[str, list[str]] = {}
        for stream, entry_id, _ in entries:
            by_stream.setdefault(stream, []).append(entry_id)
        if not by_stream and not progress:
            return
        pipe = self.r.pipeline(transaction=False)
        for stream, ids in by_stream.items():
            pipe.xack(stream, GROUP, *ids)
        if progress:
            pipe.hset(self.keys.stats, "last_progress_at", repr(time.time()))
        pipe.execute()

    # -- labels ---------------------------------------------------------------------------

    def _process(
        self,
        entries: Sequence[tuple[str, str, dict[str, str]]],
        report: BatchReport,
        views: dict[str, FrameView],
    ) -> set[str]:
        """Apply the batch's labels in one script call; fill ``views`` with the frames' state."""
        touched: set[str] = set()
        k = self.keys
        keys: list[str] = [k.labelers, k.leases, k.load, k.stats]
        args: list[Any] = []
        applied: list[tuple[str, dict[str, str]]] = []
        dead: list[tuple[str, str, dict[str, str]]] = []
        for stream, entry_id, fields in entries:
            if stream == k.opened:
                if fields.get("frame_id"):
                    touched.add(fields["frame_id"])
                continue
            report.labels_read += 1
            problem = validate_label(fields)
            if problem:
                dead.append((problem, entry_id, fields))
                continue
            fid, labeler = fields["frame_id"], fields["labeler"]
            keys += [k.frame(fid), k.frame_labels(fid), k.frame_requests(fid)]
            args += [labeler, fields["label"], entry_id, lease_member(fid, labeler)]
            applied.append((entry_id, fields))
        if applied:
            ((statuses, raw_views),) = self._run_scripts([("apply_labels", keys, args)])
            for (entry_id, fields), status in zip(applied, statuses, strict=True):
                status = _s(status)
                report.counts[status] = report.counts.get(status, 0) + 1
                if status in ("applied", "redelivered"):
                    report.applied += status == "applied"
                    touched.add(fields["frame_id"])
                else:
                    dead.append((DEAD_REASONS.get(status, status), entry_id, fields))
            for j in range(0, len(raw_views), 4):
                fid = applied[int(raw_views[j]) - 1][1]["frame_id"]
                views[fid] = _frame_view(fid, _pairs(raw_views[j + 1]), raw_views[j + 2],
                                         _pairs(raw_views[j + 3]))  # fmt: skip
        if dead:
            pipe = self.r.pipeline(transaction=False)
            for reason, entry_id, fields in dead:
                self._dead_letter(pipe, "label", reason, fields, entry_id)
            pipe.execute()
            report.dead += len(dead)
        return touched

    def _dead_letter(
        self, pipe: Any, kind: str, reason: str, payload: dict[str, str], entry_id: str = ""
    ) -> None:
        text = json.dumps(payload)[:MAX_LABEL_PAYLOAD]
        pipe.xadd(
            self.keys.dead,
            {"kind": kind, "reason": reason, "payload": text, "entry_id": entry_id,
             "at": repr(time.time())},
        )  # fmt: skip
        pipe.hincrby(self.keys.stats, "dead", 1)
        log.warning("dead letter (%s): %s %s", kind, reason, text[:200])

    # -- decisions ------------------------------------------------------------------------

    def accuracies(self, max_age: float = 1.0) -> dict[str, float]:
        """Registered labelers' accuracies, re-read at most once a second."""
        if time.monotonic() - self._accuracies_at > max_age:
            raw = self.r.hgetall(self.keys.labelers)
            self._accuracies = {_s(k): float(json.loads(v)["accuracy"]) for k, v in raw.items()}
            self._accuracies_at = time.monotonic()
        return self._accuracies

    def _read_frames(
        self, frame_ids: Sequence[str], known: dict[str, FrameView] | None = None
    ) -> list[FrameView | None]:
        """Each frame's state: from ``known`` (returned by apply_labels), else read now."""
        known = known or {}
        missing = [fid for fid in frame_ids if fid not in known]
        pipe = self.r.pipeline(transaction=False)
        for fid in missing:
            pipe.hgetall(self.keys.frame(fid))
            pipe.lrange(self.keys.frame_labels(fid), 0, -1)
            pipe.hgetall(self.keys.frame_requests(fid))
        raw = pipe.execute() if missing else []
        found = dict(known)
        for i, fid in enumerate(missing):
            meta, labels, reqs = raw[3 * i : 3 * i + 3]
            if meta:
                found[fid] = _frame_view(fid, meta, labels, reqs)
        return [found.get(fid) for fid in frame_ids]

    def _decide(
        self,
        frame_ids: Sequence[str],
        report: BatchReport,
        known: dict[str, FrameView] | None = None,
    ) -> None:
        views = self._read_frames(frame_ids, known)
        gone = [fid for fid, v in zip(frame_ids, views, strict=True) if v is None]
        if gone:
            self._drop_gone(gone)
        frames = [v for v in views if v is not None and v.meta.get("state") == "open"]
        if not frames:
            return
        accuracies = self.accuracies()
        registered = list(accuracies)
        width = max(1, max(f.n_labels for f in frames))
        labels = np.zeros((len(frames), width))
        acc = np.full((len(frames), width), 0.5)
        mask = np.zeros((len(frames), width), dtype=bool)
        for i, f in enumerate(frames):
            for j, (labeler, label) in enumerate(f.labels):
                labels[i, j] = label
                acc[i, j] = accuracies.get(labeler, 0.5)
                mask[i, j] = True
        post = aggregate(self.s.method, labels, acc, mask, self.s.prior)
        budget_left = self.budget_left()
        eligible = [f.eligible(registered) for f in frames]
        outstanding = np.array([f.outstanding for f in frames])
        n_labels = np.array([f.n_labels for f in frames])
        # Labels still on their way count as possible: wait for them, do not finalise early
        # as exhausted or out of budget.
        decisions = decide(
            self.s.method,
            post.confidence,
            n_labels,
            self.s.tau,
            self.s.kappa,
            eligible_left=np.array([len(e) for e in eligible]) + outstanding,
            budget_left=(np.inf if budget_left is None else budget_left) + outstanding,
        )
        now = time.time()
        to_finalise: list[tuple[str, list[str], list[Any]]] = []
        to_ask: list[tuple[FrameView, list[str], int]] = []
        for i, f in enumerate(frames):
            d = Decision(int(decisions[i]))
            if d is Decision.ASK:
                room = min(
                    self.s.max_inflight - f.outstanding,
                    self.s.kappa - f.n_labels - f.outstanding,
                )
                if room > 0 and eligible[i]:
                    to_ask.append((f, f.allowed(registered), room))
                continue
            record = {
                "label": str(int(post.label[i])),
                "confidence": repr(float(post.confidence[i])),
                "p1": repr(float(post.p1[i])),
                "reason": d.reason,
                "method": str(self.s.method),
                "labelers": json.dumps([lab for lab, _ in f.labels]),
                "labels": json.dumps([val for _, val in f.labels]),
                "accuracies": json.dumps([accuracies.get(lab, 0.5) for lab, _ in f.labels]),
                "finalised_at": repr(now),
            }
            flat: list[str] = [x for kv in record.items() for x in kv]
            k = self.keys
            to_finalise.append((
                "finalise",
                [k.frame(f.frame_id), k.image(f.frame_id), k.open_frames, k.final, k.stats],
                [f.frame_id, f.n_labels, *flat],
            ))  # fmt: skip
        for status in self._run_scripts(to_finalise):
            if _s(status) not in ("not_open", "stale"):
                report.finalised += 1
        if to_ask:
            report.asked += self._dispatch(to_ask)

    def budget_left(self) -> int | None:
        limit, spent = self.r.hmget(self.keys.budget, ["limit", "spent"])
        if limit is None:
            return None
        return int(limit) - int(spent or 0)

    def _live(self) -> set[str]:
        since = time.time() - self.s.live_seconds
        return {_s(x) for x in self.r.zrangebyscore(self.keys.live, since, "+inf")}

    def _dispatch(self, asks: Sequence[tuple[FrameView, list[str], int]]) -> int:
        """Ask one more labeler about each frame: uniformly at random, or least loaded.

        "Random" is the frame's own seeded permutation of all labelers allowed on it
        (:func:`labeler_order`), walked in order past those already asked or not live: the
        same sequence an offline run of the same seed uses (invariant 6).
        """
        live = self._live()
        load: dict[str, int] = {}
        if self.s.dispatch == "least_loaded":
            load = {_s(k): int(v) for k, v in self.r.hgetall(self.keys.load).items()}
        picks: list[tuple[str, str]] = []
        for f, allowed, room in asks:
            order_key = f.meta.get("task") or f.frame_id
            order = labeler_order(self.s.seed, order_key, allowed)
            ranked = [lab for lab in order if lab in live and lab not in f.requests]
            if not ranked:
                continue  # eligible labelers exist but none is running: wait for one
            if self.s.dispatch == "least_loaded":
                ranked.sort(key=lambda lab: load.get(lab, 0))  # stable: ties keep the order
            for chosen in ranked[:room]:
                load[chosen] = load.get(chosen, 0) + 1
                picks.append((f.frame_id, chosen))
        if not picks:
            return 0
        deadline = time.time() + self.lease_seconds
        k = self.keys
        views = {f.frame_id: f for f, _, _ in asks}
        calls = [
            ("ask",
             [k.frame(fid), k.frame_requests(fid), k.budget, k.leases, k.load, k.stats],
             [labeler, views[fid].n_labels, self.s.max_inflight, repr(deadline),
              lease_member(fid, labeler)])
            for fid, labeler in picks
        ]  # fmt: skip
        results = [_s(x) for x in self._run_scripts(calls)]
        granted = [p for p, res in zip(picks, results, strict=True) if res == "ok"]
        if granted:
            self._enqueue(
                self.r,
                self.keys,
                [(labeler, fid, request_id(fid, labeler)) for fid, labeler in granted],
                self.lease_seconds,
            )
        return len(granted)

    def _expire_leases(self) -> set[str]:
        due = [_s(m) for m in self.r.zrangebyscore(self.keys.leases, "-inf", time.time())]
        if not due:
            return set()
        k = self.keys
        pairs = [m.rsplit("|", 1) for m in due]
        calls = [
            ("expire_request", [k.frame_requests(fid), k.leases, k.load, k.stats],
             [labeler, member])
            for (fid, labeler), member in zip(pairs, due, strict=True)
        ]  # fmt: skip
        results = [_s(x) for x in self._run_scripts(calls)]
        expired = {fid for (fid, _), res in zip(pairs, results, strict=True) if res == "expired"}
        if expired:
            log.info("leases expired on %d frames: asking other labelers", len(expired))
        return expired

    def _drop_gone(self, frame_ids: Sequence[str]) -> None:
        k = self.keys
        reason = "frame state expired before finalisation (frame TTL)"
        self._run_scripts(
            [("drop_frame", [k.frame(fid), k.open_frames, k.dead, k.stats], [fid, reason])
             for fid in frame_ids]
        )  # fmt: skip


DEAD_REASONS = {
    "duplicate": "duplicate: this labeler already labeled this frame",
    "unknown_frame": "unknown frame",
    "unknown_labeler": "unknown labeler (not registered)",
    "finalised": "frame already finalised",
    "unsolicited": "unsolicited: this labeler was never asked about this frame",
}


def _enqueue_rq_jobs(
    client: redis.Redis, keys: Keys, requests: Sequence[Request], lease_seconds: float
) -> None:
    from gtx_stream.pipeline.label.requests import LabelRequest, enqueue_requests

    enqueue_requests(client, keys, [LabelRequest(*req) for req in requests], lease_seconds)


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {_s(flat[i]): _s(flat[i + 1]) for i in range(0, len(flat), 2)}


def _frame_view(fid: str, meta: Any, labels: Sequence[Any], requests: Any) -> FrameView:
    parsed = [json.loads(x) for x in labels]
    return FrameView(
        frame_id=fid,
        meta={_s(k): _s(v) for k, v in meta.items()},
        labels=[(str(a), int(b)) for a, b in parsed],
        requests={_s(k): _s(v) for k, v in requests.items()},
    )


def validate_label(fields: dict[str, str]) -> str | None:
    """Why a labels-stream entry is malformed, or None. Checks that need no frame state."""
    if sum(len(k) + len(v) for k, v in fields.items()) > MAX_LABEL_PAYLOAD:
        return "payload too large"
    for name in ("frame_id", "labeler", "label"):
        if not fields.get(name):
            return f"missing field: {name}"
    if fields["label"] not in ("0", "1"):
        return f"label must be 0 or 1, got {fields['label'][:40]!r}"
    return None


def _s(x: Any) -> str:
    if type(x) is str:
        return x
    # A stream entry is anyone's bytes: what is not UTF-8 becomes U+FFFD (and the label is
    # refused as malformed or unknown) instead of an exception that stops the aggregator.
    return x.decode(errors="replace") if isinstance(x, bytes) else str(x)
