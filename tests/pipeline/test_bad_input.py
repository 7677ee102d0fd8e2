"""Bad input: a clear error, the service keeps running, nothing else is lost (invariant 7).

Every case of the bad-input list has a test. Cases tested elsewhere are listed in ``ELSEWHERE``
(``test_every_case_has_a_test`` checks that each named test exists); this file adds the rest:

- labels: every malformed, unknown, stale, repeated or huge label injected into a running
  aggregator, next to good labels, in the same batches; the run ends with exactly the final
  records of the same run without the bad labels, and one dead letter, with its reason, per
  bad label (``test_bad_labels_mid_run_change_nothing_else``);
- labels whose bytes are not UTF-8 (they used to stop the aggregator);
- backends (``python`` and ``http``) that raise, answer garbage or hang, inside a running
  labeler worker: each failed request is in RQ's failed-job registry with its reason and the
  worker goes on; with the aggregator, the lease asks another labeler and every frame is
  finalised from the good labeler's labels;
- configuration: the values missing from tests/test_config.py, a service command of each
  kind with an unreachable Redis, and no password in any of these messages;
- sources: the command's one-line error for a file that is not a video, and the log line
  naming a corrupt image of a folder.
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import pytest
import redis
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from gtx_stream.cli import main
from gtx_stream.config import ConfigError, Settings, load_settings
from gtx_stream.core.draws import simulated_label
from gtx_stream.core.records import LabelEntry, LabelRequest
from gtx_stream.ops.embedded import free_port
from gtx_stream.pipeline.aggregate.aggregator import GROUP, Aggregator
from gtx_stream.pipeline.ingest.ingester import run_ingest
from gtx_stream.pipeline.label.requests import enqueue_request
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.keys import Keys
from tests.aggregator_harness import (
    Capture,
    dead_records,
    final_records,
    make_aggregator,
    open_frame,
    register,
)

ROOT = Path(__file__).resolve().parents[2]

# --- where each case of the list is tested ---------------------------------------------------

ELSEWHERE: dict[str, list[str]] = {
    "source: missing file": [
        "pipeline/test_ingest.py::test_unreadable_source_is_a_clear_error[missing-file]",
        "pipeline/test_ingest.py::test_command_errors_are_one_line[missing]",
    ],
    "source: a file that is not a video": [
        "pipeline/test_ingest.py::test_unreadable_source_is_a_clear_error[not-a-video]",
        "pipeline/test_bad_input.py::test_ingest_command_not_a_video_is_one_line",
    ],
    "source: a truncated video": [
        "pipeline/test_ingest.py::test_truncated_video_ends_with_what_could_be_read",
    ],
    "source: a folder with a corrupt image among good ones": [
        "pipeline/test_ingest.py::test_folder_skips_a_corrupt_image_without_giving_it_an_index",
        "pipeline/test_ingest.py::test_folder_refuses_truncated_images_with_a_warning",
        "pipeline/test_bad_input.py::test_corrupt_image_in_a_folder_is_a_log_line",
    ],
    "source: a camera index that does not exist": [
        "pipeline/test_ingest.py::test_unreadable_source_is_a_clear_error[camera-99]",
        "pipeline/test_ingest.py::test_command_errors_are_one_line[camera-99]",
    ],
    "source: a stream URL that refuses the connection": [
        "pipeline/test_ingest.py::test_unreadable_source_is_a_clear_error[refused-url]",
        "pipeline/test_ingest.py::test_command_errors_are_one_line[refused-url]",
    ],
    "label: wrong types": [
        "pipeline/test_aggregator.py::test_bad_labels_are_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
        "pipeline/test_bad_input.py::test_label_bytes_that_are_not_utf8_are_dead_lettered",
        "pipeline/test_fuzz_labels.py::test_rejected_labels_change_no_frame",
    ],
    "label: 2 or -1": [
        "pipeline/test_aggregator.py::test_bad_labels_are_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: a missing field": [
        "pipeline/test_aggregator.py::test_bad_labels_are_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: an unknown labeler": [
        "pipeline/test_aggregator.py::test_bad_labels_are_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: an unknown frame": [
        "pipeline/test_aggregator.py::test_bad_labels_are_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: a frame already finalised": [
        "pipeline/test_aggregator.py::test_label_for_finalised_frame_is_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: the same label twice": [
        "pipeline/test_aggregator.py::test_label_counted_once_however_often_delivered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: a request id that is not the labeler's request (made up, missing, failed)": [
        "pipeline/test_aggregator.py::test_a_label_with_a_made_up_request_id_is_not_applied",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
        "pipeline/test_fuzz_labels.py::test_rejected_labels_change_no_frame",
        "store/test_frame_scripts.py::test_a_label_is_applied_only_for_its_request[made-up]",
    ],
    "label: a failure report for a request that is not outstanding": [
        "store/test_frame_scripts.py::test_a_failure_settles_its_request_once_and_gives_the_budget_back",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "label: a huge payload": [
        "pipeline/test_aggregator.py::test_bad_labels_are_dead_lettered",
        "pipeline/test_bad_input.py::test_bad_labels_mid_run_change_nothing_else",
    ],
    "backend: python raises, returns garbage, times out": [
        "pipeline/test_backends.py::test_python_backend_errors",
        "pipeline/test_backends.py::test_python_backend_times_out_then_recovers",
        "pipeline/test_bad_input.py::test_failing_backend_fails_the_request_and_the_worker_goes_on",
        "pipeline/test_bad_input.py::test_requests_a_backend_fails_are_asked_of_another_labeler",
    ],
    "backend: http raises, returns garbage, times out": [
        "pipeline/test_backends.py::test_http_backend_errors",
        "pipeline/test_backends.py::test_http_backend_times_out",
        "pipeline/test_backends.py::test_http_backend_unreachable",
        "pipeline/test_bad_input.py::test_failing_backend_fails_the_request_and_the_worker_goes_on",
    ],
    "config: tau outside (0.5, 1)": [
        "ops/test_config.py::test_bad_values_are_one_line_naming_the_field[tau-1.5]",
        "ops/test_config.py::test_bad_values_are_one_line_naming_the_field[tau-0.5]",
        "pipeline/test_bad_input.py::test_config_values_are_refused_in_one_line",
    ],
    "config: kappa < 1": [
        "ops/test_config.py::test_bad_values_are_one_line_naming_the_field[kappa-0]",
        "pipeline/test_bad_input.py::test_config_values_are_refused_in_one_line",
    ],
    "config: a negative budget": [
        "ops/test_config.py::test_bad_values_are_one_line_naming_the_field[negative-budget]",
    ],
    "config: an accuracy outside [0, 1]": [
        "ops/test_config.py::test_bad_values_are_one_line_naming_the_field[accuracy-1.2]",
        "pipeline/test_bad_input.py::test_config_values_are_refused_in_one_line",
    ],
    "config: an unknown key": [
        "ops/test_config.py::test_unknown_key_says_so",
        "ops/test_config.py::test_bad_values_are_one_line_naming_the_field[unknown-section]",
    ],
    "config: an unreachable Redis": [
        "ops/test_config.py::test_cli_status_with_unreachable_redis",
        "pipeline/test_bad_input.py::test_every_service_with_an_unreachable_redis_says_so_in_one_line",
    ],
}


def test_every_case_has_a_test() -> None:
    """Each reference above names a test function (and parameter id) that exists."""
    for case, refs in ELSEWHERE.items():
        assert refs, case
        for ref in refs:
            path, _, name = ref.partition("::")
            func, _, param = name.partition("[")
            text = (ROOT / "tests" / path).read_text()
            assert re.search(rf"^def {re.escape(func)}\(", text, re.M), f"{case}: {ref}"
            if param:
                assert f'"{param.rstrip("]")}"' in text, f"{case}: {ref}"


# --- labels: bad ones among good ones, in one run --------------------------------------------

ACC = {f"lab{j}": a for j, a in enumerate(np.linspace(0.65, 0.95, 7))}
SEED = 3
N_FRAMES = 12
HUGE = "x" * (1 << 20)

Fields = dict[str, Any]
# (id, make the entry from the run's context, the dead letter's reason must contain this)
BAD_MID_RUN: list[tuple[str, Callable[[dict[str, Any]], Fields], str]] = [
    ("label-2", lambda c: {**c["good"], "label": "2"}, "label must be 0 or 1"),
    ("label-minus-1", lambda c: {**c["good"], "label": "-1"}, "label must be 0 or 1"),
    ("label-float", lambda c: {**c["good"], "label": "1.0"}, "label must be 0 or 1"),
    ("label-space", lambda c: {**c["good"], "label": " 1"}, "label must be 0 or 1"),
    ("label-bool", lambda c: {**c["good"], "label": "true"}, "label must be 0 or 1"),
    ("label-json", lambda c: {**c["good"], "label": '{"label": 1}'}, "label must be 0 or 1"),
    ("label-empty", lambda c: {**c["good"], "label": ""}, "missing field: label"),
    ("no-label", lambda c: _without(c["good"], "label"), "missing field: label"),
    ("no-labeler", lambda c: _without(c["good"], "labeler"), "missing field: labeler"),
    ("no-frame-id", lambda c: _without(c["good"], "frame_id"), "missing field: frame_id"),
    ("unknown-labeler", lambda c: {**c["good"], "labeler": "mallory"}, "unknown labeler"),
    ("unknown-frame", lambda c: {**c["good"], "frame_id": "src-999"}, "unknown frame"),
    ("finalised-frame", lambda c: c["late_for_final"], "frame already finalised"),
    ("same-label-twice", lambda c: dict(c["good"]), "duplicate"),
    ("made-up-request-id", lambda c: {**c["held"], "request_id": "made-up"}, "request mismatch"),
    ("no-request-id", lambda c: _without(c["held"], "request_id"), "request mismatch"),
    ("failure-made-up-request-id",
     lambda c: {**_without(c["held"], "label"), "status": "failed", "reason": "x",
                "request_id": "made-up"}, "request mismatch"),
    ("failure-no-request-id",
     lambda c: {**_without(c["held"], "label"), "status": "failed", "reason": "x",
                "request_id": ""}, "missing field: request_id"),
    ("bad-status", lambda c: {**c["good"], "status": "ok"}, "status must be 'failed' or absent"),
    ("huge-field", lambda c: {**c["good"], "junk": HUGE}, "payload too large"),
    ("huge-label", lambda c: {**c["good"], "label": HUGE}, "payload too large"),
    ("huge-frame-id", lambda c: {**c["good"], "frame_id": HUGE}, "payload too large"),
    ("many-fields", lambda c: {**c["good"], **{f"f{i}": "v" * 8 for i in range(500)}},
     "payload too large"),
]  # fmt: skip


def _without(fields: Fields, name: str) -> Fields:
    return {k: v for k, v in fields.items() if k != name}


def _comparable(records: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    # timing, and what names the pipeline (its key prefix) or depends on the clock
    timing = {"opened_at", "finalised_at", "image_key", "image_expires_at"}
    return {rec["frame_id"]: {k: v for k, v in rec.items() if k not in timing} for rec in records}


def _run(
    raw: redis.Redis, r: redis.Redis, keys: Keys, inject: bool
) -> tuple[dict[str, Fields], list[str]]:
    """Open frames, run one aggregator with simulated answers; ``inject`` the bad labels.

    When it injects, one request is answered a step late, so that labels with a wrong request
    id can be sent in the name of a labeler whose request is outstanding. Returns the injected
    entries (by case id) and their stream entry ids.
    """
    register(r, keys, ACC)
    for i in range(N_FRAMES):
        open_frame(r, keys, i, i % 2)
    capture = Capture()
    agg = make_aggregator(raw, keys, capture, tau=0.99, kappa=5, seed=SEED)
    injected: dict[str, Fields] = {}
    ids: list[str] = []
    phase = 0
    held: list[LabelRequest] = []
    for _ in range(2000):
        report = agg.step(block_ms=1)
        posted = []
        answering, held = held + capture.pending, []
        capture.pending.clear()
        finals = final_records(r, keys)
        if inject and phase == 0 and len(answering) > 1 and finals:
            held = [answering.pop()]
        for req in answering:
            truth = int(r.hget(keys.frame(req.frame_id), "truth") or 0)
            label = simulated_label(SEED, req.frame_id, req.labeler_id, truth, ACC[req.labeler_id])
            fields = LabelEntry(req.frame_id, req.labeler_id, req.request_id, label).to_fields()
            raw.xadd(keys.labels, fields)  # type: ignore[arg-type]
            posted.append(fields)
        if held:
            # the labels just posted are not applied yet: bad ones go into the same batch
            final = finals[0]
            outsider = next(lab for lab in ACC if lab not in json.loads(final["labelers"]))
            (req,) = held
            context = {
                "good": posted[0],
                "held": LabelEntry(req.frame_id, req.labeler_id, req.request_id, 1).to_fields(),
                "late_for_final": {"frame_id": final["frame_id"], "labeler": outsider,
                                   "label": "1"},
            }  # fmt: skip
            for case, make, _ in BAD_MID_RUN:
                injected[case] = make(context)
                ids.append(_s(raw.xadd(keys.labels, injected[case])))  # type: ignore[arg-type]
            phase = 1
        idle = not posted and not held and not report.labels_read
        if idle and r.zcard(keys.open_frames) == 0 and (phase or not inject):
            return injected, ids
    raise AssertionError("the aggregator did not finish")


def _s(x: object) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def test_bad_labels_mid_run_change_nothing_else(redis_url: str, r: redis.Redis) -> None:
    """Every bad label of the list, mixed into a run's batches: dead-lettered once with its
    reason, and the run's final records equal those of the same run without them."""
    raw = redis.Redis.from_url(redis_url)  # bytes, as the services use
    clean, dirty = Keys("clean"), Keys("gtx")
    _run(raw, r, clean, inject=False)
    injected, ids = _run(raw, r, dirty, inject=True)
    assert sorted(injected) == sorted(case for case, _, _ in BAD_MID_RUN)

    expected = _comparable(final_records(r, clean))
    assert len(expected) == N_FRAMES
    assert _comparable(final_records(r, dirty)) == expected  # nothing else lost or changed

    dead = dead_records(r, dirty)
    assert len(dead) == len(BAD_MID_RUN)  # one per bad label, none for a good one
    by_entry = {d["entry_id"]: d for d in dead}
    for (case, _, reason), entry_id in zip(BAD_MID_RUN, ids, strict=True):
        letter = by_entry[entry_id]
        assert reason in letter["reason"], (case, letter["reason"])
        assert letter["kind"] == "label"
        assert len(letter["payload"]) <= 4096  # a huge payload is kept cut, not whole
    # each good label counted once: the labels applied are the labels in the final records
    applied = int(r.hget(dirty.stats, "labels_applied") or 0)
    assert applied == sum(int(rec["n_labels"]) for rec in expected.values())
    assert r.xpending(dirty.labels, GROUP)["pending"] == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"labeler": b"lab\xff"}, "unknown labeler"),
        ({"frame_id": b"\xfe\xff"}, "unknown frame"),
        ({"label": b"\xb1"}, "label must be 0 or 1"),
        ({b"\xff": b"\xff"}, None),  # a field nobody reads: the label itself is good
    ],
    ids=["labeler", "frame-id", "label", "extra-field"],
)
def test_label_bytes_that_are_not_utf8_are_dead_lettered(
    redis_url: str, r: redis.Redis, fields: dict[Any, Any], reason: str | None
) -> None:
    """Bytes that are not UTF-8 used to raise in the aggregator and stay pending forever."""
    raw = redis.Redis.from_url(redis_url)
    keys = Keys("gtx")
    register(r, keys, ACC)
    fid = open_frame(r, keys, 0, 1)
    capture = Capture()
    agg = make_aggregator(raw, keys, capture, tau=0.999999)
    agg.step(block_ms=1)
    (req,) = capture.all
    good: dict[Any, Any] = LabelEntry(fid, req.labeler_id, req.request_id, 1).to_fields()
    before = r.lrange(keys.frame_labels(fid), 0, -1), r.hgetall(keys.frame_requests(fid))
    raw.xadd(keys.labels, {**good, **fields})
    agg.step(block_ms=1)
    assert r.xpending(keys.labels, GROUP)["pending"] == 0
    if reason is None:
        assert dead_records(r, keys) == [] and r.llen(keys.frame_labels(fid)) == 1
        return
    (letter,) = dead_records(r, keys)
    assert reason in letter["reason"]
    assert (r.lrange(keys.frame_labels(fid), 0, -1), r.hgetall(keys.frame_requests(fid))) == before
    # and the aggregator goes on with good labels
    raw.xadd(keys.labels, good)
    agg.step(block_ms=1)
    assert r.llen(keys.frame_labels(fid)) == 1


# --- backends that fail inside a running worker ------------------------------------------------


def mode_labeler(image: np.ndarray, metadata: dict[str, str]) -> Any:
    """A ``python`` labeler whose behaviour the frame's ``task`` field picks (a labeler sees the
    frame's source, index and task, not its truth)."""
    mode = metadata.get("task", "ok")
    if mode == "raise":
        raise RuntimeError("model crashed")
    if mode == "garbage":
        return "maybe"
    if mode == "hang":
        time.sleep(6)
    return 1


class _ModeHandler(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers["Content-Length"]))
        meta = json.loads(self.headers["X-GTX-Metadata"])
        mode = meta.get("task", "ok")
        if mode == "raise":
            self.send_error(500, "labeling service crashed")
            return
        if mode == "hang":
            self.release.wait(10)
        body = b"<html>maybe</html>" if mode == "garbage" else json.dumps({"label": 1}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the labeler gave up waiting

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def mode_server() -> Iterator[str]:
    _ModeHandler.release = threading.Event()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ModeHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/label"
    _ModeHandler.release.set()
    server.shutdown()
    server.server_close()


def _jpeg() -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 200, dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _put_frame(r: redis.Redis, keys: Keys, fid: str, **fields: str) -> None:
    mapping: dict[Any, Any] = {"state": "open", "source": "cam", "truth": "1", **fields}
    r.hset(keys.frame(fid), mapping=mapping)
    r.set(keys.image(fid), _jpeg())


BACKEND_FAILURES = {
    "python": {
        "raise": "raised RuntimeError: model crashed",
        "garbage": "returned 'maybe', not 0 or 1",
        "hang": "gave no answer within 1.5 s",
    },
    "http": {
        "raise": "answered HTTP 500",
        "garbage": "answered with no JSON: b'<html>maybe</html>'",
        "hang": "gave no answer within 1.5 s",
    },
}


@pytest.mark.parametrize("kind", sorted(BACKEND_FAILURES))
def test_failing_backend_fails_the_request_and_the_worker_goes_on(
    redis_url: str, r: redis.Redis, keys: Keys, mode_server: str, kind: str
) -> None:
    # the timeout is long enough that the "ok" request, served right after the hung one by a
    # fresh thread, answers within it on a loaded machine (0.3 s did not, once)
    target = f"{__name__}:mode_labeler" if kind == "python" else mode_server
    labeler = {"id": "m", "backend": kind, "target": target, "timeout": 1.5}
    failures = BACKEND_FAILURES[kind]
    jobs = {}
    for mode in [*failures, "ok"]:
        _put_frame(r, keys, f"cam-{mode}", task=mode)
        jobs[mode] = enqueue_request(r, keys, "m", f"cam-{mode}", f"r-{mode}", 30)
    settings = Settings.model_validate({"redis": {"url": redis_url}, "labelers": [labeler]})
    assert run_labeler_worker(settings, ["m"], burst=True) == 0  # did not stop at a failure

    labels = [f for _, f in cast(Any, r.xrange(keys.labels))]
    assert [(f["frame_id"], f["label"]) for f in labels if "label" in f] == [("cam-ok", "1")]
    # each failure is reported at once on the labels stream, with its reason
    reported = {f["frame_id"]: f["reason"] for f in labels if f.get("status") == "failed"}
    assert sorted(reported) == sorted(f"cam-{mode}" for mode in failures)
    failed = FailedJobRegistry(keys.queue("m"), connection=r, serializer=JSONSerializer)
    assert sorted(failed.get_job_ids()) == sorted(jobs[mode].id for mode in failures)
    raw = redis.Redis.from_url(redis_url)
    for mode, message in failures.items():
        job = Job.fetch(jobs[mode].id, connection=raw, serializer=JSONSerializer)
        result = job.latest_result()
        assert result is not None and result.exc_string is not None
        assert f"{kind} labeler m, frame cam-{mode}: " in result.exc_string
        assert message in result.exc_string, result.exc_string


def test_requests_a_backend_fails_are_asked_of_another_labeler(
    redis_url: str, r: redis.Redis, keys: Keys
) -> None:
    """A labeler whose backend always raises: its requests fail (failure reports), the other
    labeler is asked, and every frame is finalised on the good labeler's labels. The lease is
    long enough that a slow answer of the good labeler on a loaded machine does not expire."""
    raw = redis.Redis.from_url(redis_url)
    for i in range(6):
        _put_frame(r, keys, f"cam-{i}", task="raise", truth=str(i % 2))
        r.zadd(keys.open_frames, {f"cam-{i}": time.time()})
    settings = Settings.model_validate({
        "redis": {"url": redis_url},
        "labelers": [
            {"id": "broken", "backend": "python", "target": f"{__name__}:mode_labeler",
             "accuracy": 0.9},
            {"id": "good", "backend": "simulated", "accuracy": 0.9, "seed": 1},
        ],
        "aggregator": {"tau": 0.85, "kappa": 2, "lease_seconds": 5.0, "sweep_seconds": 0.05},
    })  # fmt: skip
    stop = threading.Event()
    worker = threading.Thread(
        target=run_labeler_worker, args=(settings, ["broken", "good"]),
        kwargs={"stop_event": stop}, daemon=True,
    )  # fmt: skip
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while r.zcard(keys.live) < 2:  # registered and live
            assert time.monotonic() < deadline
            time.sleep(0.02)
        agg = Aggregator(raw, keys, settings.aggregator, consumer="a1")
        agg.setup()
        while r.zcard(keys.open_frames):
            assert time.monotonic() < deadline, "frames left open"
            agg.step(block_ms=20)
    finally:
        stop.set()
        worker.join(timeout=30)
    records = final_records(r, keys)
    assert sorted(rec["frame_id"] for rec in records) == [f"cam-{i}" for i in range(6)]
    for rec in records:
        assert json.loads(rec["labelers"]) == ["good"], rec
        assert rec["reason"] == "confident"
    failed = FailedJobRegistry(keys.queue("broken"), connection=r, serializer=JSONSerializer)
    asked_broken = int(r.hget(keys.stats, "requests") or 0) - len(records)
    assert failed.count == asked_broken
    assert dead_records(r, keys) == []


# --- configuration -----------------------------------------------------------------------------

SECRET = "s3cret-pw"


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[aggregator]\ntau = 1.0\n", "aggregator.tau"),
        ("[aggregator]\ntau = -0.9\n", "aggregator.tau"),
        ("[aggregator]\nkappa = -3\n", "aggregator.kappa"),
        ("[aggregator]\nkappa = 2.5\n", "aggregator.kappa"),
        ("[aggregator]\nbudget = \"lots\"\n", "aggregator.budget"),
        ("[[labelers]]\nid = \"a\"\naccuracy = -0.1\n", "labelers.0.accuracy"),
        ("[[labelers]]\nid = \"a\"\naccuracy = \"high\"\n", "labelers.0.accuracy"),
        ("[ingest]\nframe_ttl = 0\n", "ingest.frame_ttl"),
        ("[[labelers]]\nid = \"a\"\naccuracy = 0.9\n[[labelers]]\nid = \"a\"\naccuracy = 0.8\n",
         "config"),
        ("redis = \"redis://gtx:" + SECRET + "@127.0.0.1:6379/0\"\n", "redis"),
    ],
    ids=["tau-1.0", "tau-negative", "kappa-negative", "kappa-float", "budget-string",
         "accuracy-negative", "accuracy-string", "frame-ttl-0", "repeated-ids", "redis-string"],
)  # fmt: skip
def test_config_values_are_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, field: str
) -> None:
    """A one-line message naming the field, exit 2, and never the Redis password."""
    url = f'[redis]\nurl = "redis://gtx:{SECRET}@127.0.0.1:6379/0"\n'
    path = tmp_path / "bad.toml"
    path.write_text(toml if toml.startswith("redis =") else url + toml)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"config error: {field}: ")
    assert SECRET not in message
    for command in (["aggregator"], ["status"], ["labeler", "--all"]):
        assert main([*command, "--config", str(path)]) == 2
        out = capsys.readouterr()
        assert out.err.strip() == message and out.out == ""


@pytest.mark.parametrize(
    "command",
    [["aggregator"], ["labeler", "--all"], ["ingest", "VIDEO", "--truth", "TRUTH"], ["tail"],
     ["labelers", "list"], ["status"], ["status", "--check"]],
    ids=lambda c: "-".join(c[:2]).replace("--", ""),
)  # fmt: skip
def test_every_service_with_an_unreachable_redis_says_so_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv

    video = tmp_path / "v.avi"
    write_truth_csv(tmp_path / "truth.csv", write_synthetic_video(video, 2, seed=0))
    config = tmp_path / "c.toml"
    config.write_text(
        f'[redis]\nurl = "redis://gtx:{SECRET}@127.0.0.1:{free_port()}/0"\n'
        "socket_timeout = 2.0\n\n"
        '[[labelers]]\nid = "a"\nbackend = "simulated"\naccuracy = 0.8\n'
    )
    paths = {"VIDEO": str(video), "TRUTH": str(tmp_path / "truth.csv")}
    args = [paths.get(a, a) for a in command]
    code = main([args[0], "--config", str(config), *args[1:]])
    out = capsys.readouterr()
    assert code == 1  # a restart may find Redis up: not 2, a configuration error's
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert "Connection refused" in lines[0] or "unreachable" in lines[0]
    assert SECRET not in out.err + out.out


# --- sources -----------------------------------------------------------------------------------


def test_ingest_command_not_a_video_is_one_line(
    redis_url: str, r: redis.Redis, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_bytes(b"plain text, not a video\n" * 40)
    config = tmp_path / "c.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n')
    assert main(["ingest", str(notes), "--config", str(config)]) == 2  # fails after a restart
    out = capsys.readouterr()
    assert out.err.strip() == f"gtx-stream ingest: error: cannot read {notes}: not a video " \
        "OpenCV can decode"  # fmt: skip
    assert r.dbsize() == 0


def test_corrupt_image_in_a_folder_is_a_log_line(
    r: redis.Redis, keys: Keys, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(folder / name), np.full((24, 32, 3), 90, np.uint8))
    (folder / "b.jpg").write_bytes(b"\xff\xd8 cut off")
    with caplog.at_level(logging.WARNING, logger="gtx_stream"):
        report = run_ingest(r, keys, Settings(), str(folder))
    assert (report.opened, report.corrupt) == (2, 1)
    warnings = [rec.getMessage() for rec in caplog.records if rec.levelno == logging.WARNING]
    # a JPEG start marker and nothing else: refused as truncated before OpenCV sees it
    assert warnings == [
        f"{folder.resolve() / 'b.jpg'}: truncated JPEG (no end-of-image marker), skipped"
    ]
    assert "corrupt 1" in report.summary()


def test_a_label_error_is_one_line_and_a_backend_bug_keeps_its_traceback(
    redis_url: str, r: redis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    """A frame a simulated labeler cannot label (no truth) fails its request with one warning
    line saying why, not RQ's traceback after it; a ``python`` backend that raises (a bug in
    the user's code) still gets RQ's traceback in the log."""
    _put_frame(r, keys, "cam-no-truth", truth="")
    _put_frame(r, keys, "cam-raise", task="raise")
    enqueue_request(r, keys, "sim", "cam-no-truth", "r-1", 30)
    enqueue_request(r, keys, "py", "cam-raise", "r-2", 30)
    settings = Settings.model_validate({"redis": {"url": redis_url}, "labelers": [
        {"id": "sim", "backend": "simulated", "accuracy": 0.9},
        {"id": "py", "backend": "python", "target": f"{__name__}:mode_labeler"},
    ]})  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert run_labeler_worker(settings, ["sim", "py"], burst=True) == 0
    lines = [(rec.name, rec.levelno, rec.getMessage()) for rec in caplog.records]
    sim = [m for _, _, m in lines if "cam-no-truth" in m or "r-1" in m]
    assert len(sim) == 1 and "the frame has no truth" in sim[0], lines
    assert "Traceback" not in sim[0]
    bug = [m for _, level, m in lines if level == logging.ERROR and "Traceback" in m]
    assert len(bug) == 1 and "model crashed" in bug[0], lines
    reasons = {f["frame_id"]: f.get("reason", "") for _, f in cast(Any, r.xrange(keys.labels))}
    assert "has no truth" in reasons["cam-no-truth"] and "model crashed" in reasons["cam-raise"]
