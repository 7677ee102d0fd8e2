"""The four labeler backends, and how each one fails."""

from __future__ import annotations

import csv
import http.server
import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from gtx_stream.config import LabelerSettings
from gtx_stream.core.draws import simulated_label
from gtx_stream.pipeline.label.backends import (
    Frame,
    HttpBackend,
    LabelError,
    PythonBackend,
    ReplayBackend,
    SimulatedBackend,
    build_backend,
    import_function,
)
from tests import labeler_fixtures


def jpeg(value: int, shape: tuple[int, int] = (24, 32)) -> bytes:
    image = np.full((*shape, 3), value, dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


PIPELINE_FIELDS = {"state": "open", "n_labels": "2", "eligible": '["a"]', "source_id": "cam",
                   "opened_at": "1700000000.5"}  # fmt: skip
DESCRIBED = {"frame_id": "cam-3", "source": "cam", "source_id": "cam", "frame_index": "1",
             "opened_at": "1700000000.5"}  # fmt: skip
"""What a ``python`` or ``http`` labeler is handed of ``frame("cam-3", **PIPELINE_FIELDS)``."""


def frame(frame_id: str = "cam-0000001", truth: int | None = 1, **meta: str) -> Frame:
    metadata = {"source": "cam", "frame_index": "1", **meta}
    if truth is not None:
        metadata["truth"] = str(truth)
    return Frame(frame_id, metadata, jpeg(230))


# --- Frame ------------------------------------------------------------------------------------


def test_frame_decodes_the_jpeg_lazily_as_bgr() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, :, 2] = 255  # red in BGR
    ok, buf = cv2.imencode(".png", image)  # lossless, any format imdecode reads
    f = Frame("f", {}, buf.tobytes())
    assert f._image is None
    assert f.image.shape == (8, 8, 3)
    assert f.image[0, 0].tolist() == [0, 0, 255]
    assert f.image is f.image  # decoded once


@pytest.mark.parametrize("data", [None, b"", b"not a jpeg"], ids=["none", "empty", "garbage"])
def test_frame_without_a_readable_image_is_a_label_error(data: bytes | None) -> None:
    with pytest.raises(LabelError, match="frame f"):
        _ = Frame("f", {}, data).image


# --- simulated --------------------------------------------------------------------------------


def test_simulated_is_deterministic_and_matches_the_shared_draw() -> None:
    backend = SimulatedBackend("alice", accuracy=0.7, seed=11)
    for i in range(50):
        f = frame(f"cam-{i:07d}", truth=i % 2)
        first = backend.label(f)
        assert backend.label(f) == first
        assert first == simulated_label(11, f.frame_id, "alice", i % 2, 0.7)


def test_simulated_accuracy_over_many_frames() -> None:
    backend = SimulatedBackend("bob", accuracy=0.7, seed=3)
    n = 4000
    right = sum(backend.label(frame(f"f{i}", truth=i % 2)) == i % 2 for i in range(n))
    # sd of the share is sqrt(0.21 / 4000) ~ 0.007: 0.03 is over four sd
    assert abs(right / n - 0.7) < 0.03


def test_simulated_labelers_disagree_independently() -> None:
    a = SimulatedBackend("a", accuracy=0.5, seed=0)
    b = SimulatedBackend("b", accuracy=0.5, seed=0)
    labels = [(a.label(frame(f"f{i}")), b.label(frame(f"f{i}"))) for i in range(200)]
    assert any(x != y for x, y in labels)


@pytest.mark.parametrize("truth", [None, "", "2", "yes"], ids=["missing", "empty", "two", "word"])
def test_simulated_needs_a_binary_truth(truth: str | None) -> None:
    meta = {} if truth is None else {"truth": truth}
    with pytest.raises(LabelError, match="simulated labeler a, frame f: .*truth"):
        SimulatedBackend("a", 0.9).label(Frame("f", meta, None))


def test_simulated_does_not_need_the_image() -> None:
    assert SimulatedBackend("a", 1.0).label(Frame("f", {"truth": "0"}, None)) == 0


def test_simulated_settings_need_an_accuracy() -> None:
    with pytest.raises(ValidationError, match="simulated labeler 'a' needs an accuracy"):
        LabelerSettings(id="a", backend="simulated")
    with pytest.raises(LabelError, match="needs an accuracy"):  # settings built unchecked
        build_backend(LabelerSettings.model_construct(id="a", backend="simulated"))
    backend = build_backend(LabelerSettings(id="a", backend="simulated", accuracy=0.8, seed=5))
    assert isinstance(backend, SimulatedBackend)
    assert (backend.accuracy, backend.seed) == (0.8, 5)


# --- replay -----------------------------------------------------------------------------------


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    (tmp_path / "answers.csv").write_text("task,worker,label\n1,w1,1\n2,w1,0\n1,w2,0\n3,w2,1\n")
    return tmp_path


def test_replay_answers_what_the_worker_answered(tiny_dataset: Path) -> None:
    w1 = ReplayBackend("w1", tiny_dataset)
    w2 = build_backend(LabelerSettings(id="w2", backend="replay", target=str(tiny_dataset)))
    assert w1.label(frame(task="1")) == 1
    assert w1.label(frame(task="2")) == 0
    assert w2.label(frame(task="1")) == 0
    assert w2.label(frame(task="3")) == 1


def test_replay_without_a_recorded_answer_is_an_error(tiny_dataset: Path) -> None:
    w1 = ReplayBackend("w1", tiny_dataset)
    with pytest.raises(LabelError, match="no answer to task '3'"):
        w1.label(frame(task="3"))
    with pytest.raises(LabelError, match="no 'task' field"):
        w1.label(frame())


def test_replay_refuses_unknown_workers_and_folders(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(LabelError, match="has no answers"):
        ReplayBackend("nobody", tiny_dataset)
    with pytest.raises(LabelError, match="no answers.csv"):
        ReplayBackend("w1", tmp_path / "missing")
    with pytest.raises(ValidationError, match="replay labeler 'w1' needs target"):
        LabelerSettings(id="w1", backend="replay")


def test_replay_refuses_a_label_outside_0_1(tmp_path: Path) -> None:
    (tmp_path / "answers.csv").write_text("task,worker,label\n1,w1,3\n")
    with pytest.raises(LabelError, match="label must be 0 or 1"):
        ReplayBackend("w1", tmp_path)


def test_replay_possent(datasets: Path) -> None:
    folder = datasets / "possent"
    with (folder / "answers.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    worker = rows[0]["worker"]
    mine = [r for r in rows if r["worker"] == worker]
    backend = ReplayBackend(worker, folder)
    for r in mine:
        assert backend.label(frame(task=r["task"])) == int(r["label"])
    answered = {r["task"] for r in mine}
    other = next(r["task"] for r in rows if r["task"] not in answered)
    with pytest.raises(LabelError, match="no answer"):
        backend.label(frame(task=other))


# --- python -----------------------------------------------------------------------------------


def test_python_backend_gets_image_and_metadata() -> None:
    bright = PythonBackend("m", "tests.labeler_fixtures:bright")
    assert bright.label(Frame("f", {}, jpeg(230))) == 1
    assert bright.label(Frame("f", {}, jpeg(20))) == 0
    parity = build_backend(
        LabelerSettings(id="m", backend="python", target="tests.labeler_fixtures:index_parity")
    )
    assert parity.label(frame(frame_index="4")) == 0
    assert parity.label(frame(frame_index="7")) == 1
    assert PythonBackend("m", "tests.labeler_fixtures:numpy_one").label(frame()) == 1


def test_python_backend_is_not_handed_the_truth_nor_pipeline_fields() -> None:
    labeler_fixtures.seen.clear()
    backend = PythonBackend("m", "tests.labeler_fixtures:record_metadata")
    f = frame("cam-3", truth=1, **PIPELINE_FIELDS)
    assert backend.label(f) == 1
    backend.close()
    assert labeler_fixtures.seen == [DESCRIBED]
    assert PythonBackend("m", "tests.labeler_fixtures:sees_truth").label(f) == 0


def test_described_source_has_no_password() -> None:
    f = Frame("f", {"source": "rtsp://cam:s3cret@10.0.0.7/live", "truth": "1"}, None)
    assert f.describe() == {"frame_id": "f", "source": "rtsp://cam:***@10.0.0.7/live"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.labeler_fixtures:explode", "raised RuntimeError: model crashed"),
        ("tests.labeler_fixtures:answer_yes", "returned 'yes', not 0 or 1"),
        ("tests.labeler_fixtures:answer_half", "returned 0.5, not 0 or 1"),
        ("tests.labeler_fixtures:answer_two", "returned 2, not 0 or 1"),
        ("tests.labeler_fixtures:answer_none", "returned None, not 0 or 1"),
    ],
    ids=["raises", "string", "float", "two", "none"],
)
def test_python_backend_errors(target: str, message: str) -> None:
    with pytest.raises(LabelError, match=f"python labeler m, frame cam-0000001: .*{message}"):
        PythonBackend("m", target).label(frame())


def test_python_backend_times_out_then_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    backend = PythonBackend("m", "tests.labeler_fixtures:slow_parity", timeout=0.3)
    monkeypatch.setenv(labeler_fixtures.SLEEP_VARIABLE, "3")
    with pytest.raises(LabelError, match="no answer within 0.3 s"):
        backend.label(frame())
    # the hung call keeps its (abandoned) thread; the next frame gets a fresh one
    monkeypatch.setenv(labeler_fixtures.SLEEP_VARIABLE, "0")
    assert backend.label(frame(frame_index="2")) == 0
    backend.close()


def test_python_function_raising_timeout_error_is_its_own_error() -> None:
    # not mistaken for the backend's own timeout (a wait slice ending raises TimeoutError too)
    backend = PythonBackend("m", "tests.labeler_fixtures:raise_timeout", timeout=5.0)
    started = time.monotonic()
    with pytest.raises(LabelError, match="raised TimeoutError: the model's own timeout"):
        backend.label(frame())
    assert time.monotonic() - started < 4.0
    backend.close()


def test_python_module_in_the_current_directory_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "drill_model_c7.py").write_text("def predict(image, metadata):\n    return 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "drill_model_c7", raising=False)
    assert PythonBackend("m", "drill_model_c7:predict").label(frame()) == 1


@pytest.mark.parametrize(
    "target",
    [
        "tests.labeler_fixtures",
        "tests.labeler_fixtures:",
        ":truth_label",
        "no_such_module_xyz:f",
        "tests.labeler_fixtures:missing",
        "tests.labeler_fixtures:NOT_CALLABLE",
    ],
)
def test_python_target_errors(target: str) -> None:
    with pytest.raises(LabelError, match="python target"):
        import_function(target)


# --- http -------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []
    release = threading.Event()  # set at teardown: ends the /slow answers

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append({"path": self.path, "headers": self.headers, "body": body})
        meta = json.loads(self.headers["X-GTX-Metadata"])
        if self.path == "/slow":
            self.release.wait(10)
        if self.path == "/status500":
            self.send_error(500, "boom")
            return
        answers = {
            "/label": json.dumps({"label": int(meta["frame_index"]) % 2}),
            "/slow": json.dumps({"label": 1}),
            "/notjson": "yes",
            "/two": json.dumps({"label": 2}),
            "/string": json.dumps({"label": "1"}),
            "/list": json.dumps([1]),
        }
        out = answers[self.path].encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (the timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_labeler() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    _Handler.seen = []
    _Handler.release = threading.Event()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    _Handler.release.set()
    server.shutdown()
    server.server_close()


def test_http_backend_posts_the_jpeg_and_reads_the_label(http_labeler: str) -> None:
    backend = build_backend(
        LabelerSettings(id="vendor", backend="http", target=f"{http_labeler}/label")
    )
    f = frame("cam-0000042", truth=1, task="7", frame_index="42", **PIPELINE_FIELDS)
    assert backend.label(f) == 0
    assert backend.label(frame(frame_index="43")) == 1
    req = _Handler.seen[0]
    assert req["body"] == f.jpeg
    assert req["headers"]["Content-Type"] == "image/jpeg"
    assert req["headers"]["X-GTX-Frame-Id"] == "cam-0000042"
    assert req["headers"]["X-GTX-Labeler"] == "vendor"
    # the frame's truth and the pipeline's own fields do not reach a vendor
    assert json.loads(req["headers"]["X-GTX-Metadata"]) == {
        **DESCRIBED,
        "frame_id": "cam-0000042",
        "frame_index": "42",
        "task": "7",
    }


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/notjson", "with no JSON"),
        ("/two", 'not {"label": 0 or 1}'),
        ("/string", 'not {"label": 0 or 1}'),
        ("/list", 'not {"label": 0 or 1}'),
        ("/status500", "HTTP 500"),
    ],
)
def test_http_backend_errors(http_labeler: str, path: str, message: str) -> None:
    with pytest.raises(LabelError, match=f"http labeler v, frame cam-0000001: .*{message}"):
        HttpBackend("v", f"{http_labeler}{path}").label(frame())


def test_http_backend_times_out(http_labeler: str) -> None:
    backend = HttpBackend("v", f"{http_labeler}/slow", timeout=0.2)
    with pytest.raises(LabelError, match="no answer within 0.2 s"):
        backend.label(frame())


def test_http_backend_unreachable() -> None:
    from gtx_stream.ops.embedded import free_port

    with pytest.raises(LabelError, match="cannot reach"):
        HttpBackend("v", f"http://127.0.0.1:{free_port()}/").label(frame())


def test_http_backend_needs_an_http_url_and_an_image() -> None:
    with pytest.raises(LabelError, match="http"):
        HttpBackend("v", "ftp://example.org/x")
    with pytest.raises(LabelError, match="no image"):
        HttpBackend("v", "http://127.0.0.1:1/").label(Frame("f", {"truth": "1"}, None))


# --- batches (labeler setting batch > 1) ------------------------------------------------------

BATCH_TARGET = "tests.pipeline.test_batch_requests"


def batch_frames(n: int) -> list[Frame]:
    return [frame(f"cam-{i}", frame_index=str(i)) for i in range(n)]


def test_python_batch_is_one_call_with_lists_and_a_bad_item_fails_alone() -> None:
    from tests.pipeline import test_batch_requests as fixtures

    fixtures.batches.clear()
    backend = PythonBackend("m", f"{BATCH_TARGET}:odd_fails", batch=4)
    frames = batch_frames(4)
    frames[2] = Frame("cam-2", {"frame_index": "2"}, b"not a jpeg")  # fails before the call
    out = backend.label_batch(frames)
    assert fixtures.batches == [["cam-0", "cam-1", "cam-3"]]  # one call, the readable frames
    assert out[0] == 1
    assert isinstance(out[1], LabelError) and "frame cam-1" in str(out[1])
    assert isinstance(out[2], LabelError) and "not a readable JPEG" in str(out[2])
    assert isinstance(out[3], LabelError) and "None" in str(out[3])


def test_python_batch_errors_fail_the_whole_batch() -> None:
    crash = PythonBackend("m", f"{BATCH_TARGET}:crash_batch", batch=4)
    with pytest.raises(LabelError, match="batch of 2 frames: .*out of memory"):
        crash.label_batch(batch_frames(2))
    wrong = PythonBackend("m", "tests.labeler_fixtures:index_parity", batch=4)
    with pytest.raises(LabelError, match="batch of 2 frames"):
        wrong.label_batch(batch_frames(2))  # a one-frame function handed lists


def test_batch_one_and_simulated_batches_answer_frame_by_frame() -> None:
    one = PythonBackend("m", "tests.labeler_fixtures:index_parity")
    assert one.label_batch(batch_frames(3)) == [0, 1, 0]
    sim = build_backend(LabelerSettings(id="s", accuracy=0.8, seed=2, batch=8))
    frames = batch_frames(5)
    assert sim.batch == 8 and sim.label_batch(frames) == [sim.label(f) for f in frames]


class _BatchHandler(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"headers": self.headers, "body": body})
        frames = body["frames"]
        labels: list[Any] = [int(f["metadata"]["frame_index"]) % 2 for f in frames]
        if self.path == "/null-for-1":
            labels = [
                None if f["frame_id"] == "cam-1" else x for f, x in zip(frames, labels, strict=True)
            ]
        answer = {"/short": {"labels": labels[:-1]}, "/bare": labels}.get(
            self.path, {"labels": labels}
        )
        out = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def http_batch_labeler() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BatchHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    _BatchHandler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_batch_is_one_json_post(http_batch_labeler: str) -> None:
    import base64

    backend = HttpBackend("v", f"{http_batch_labeler}/null-for-1", batch=4)
    frames = batch_frames(3) + [Frame("cam-9", {"frame_index": "9"}, None)]
    out = backend.label_batch(frames)
    [post] = _BatchHandler.seen
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["X-GTX-Labeler"] == "v"
    body = post["body"]
    assert body["labeler"] == "v"
    assert [f["frame_id"] for f in body["frames"]] == ["cam-0", "cam-1", "cam-2"]
    assert base64.b64decode(body["frames"][0]["jpeg"]) == frames[0].jpeg
    assert body["frames"][0]["metadata"] == frames[0].describe()
    assert "truth" not in body["frames"][0]["metadata"]
    assert out[0] == 0 and out[2] == 0
    assert isinstance(out[1], LabelError) and "frame cam-1" in str(out[1])
    assert isinstance(out[3], LabelError) and "no image stored" in str(out[3])


@pytest.mark.parametrize("path", ["/short", "/bare"])
def test_http_batch_answer_of_the_wrong_shape_fails_the_batch(
    http_batch_labeler: str, path: str
) -> None:
    backend = HttpBackend("v", f"{http_batch_labeler}{path}", batch=4)
    with pytest.raises(LabelError, match="batch of 3 frames"):
        backend.label_batch(batch_frames(3))
