"""The trained model as a ``python`` labeler: ``gtx_stream.train.labeler:predict``."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from gtx_stream.pipeline.label.backends import Frame, PythonBackend
from tests.train.conftest import image_of

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from gtx_stream.train import labeler  # noqa: E402


@pytest.fixture
def model_dir(head_model: tuple[Path, Path]) -> Path:
    return head_model[1]


def test_the_python_backend_labels_frames_with_the_model(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(labeler.MODEL_DIR_ENV, str(model_dir))
    backend = PythonBackend("model-1", "gtx_stream.train.labeler:predict", timeout=60)
    try:
        answers = []
        for i in range(100, 110):  # frames the model never saw
            label = i % 2
            ok, buf = cv2.imencode(".jpg", image_of(label, i))
            assert ok
            answers.append((label, backend.label(Frame(f"cam-{i}", {}, buf.tobytes()))))
    finally:
        backend.close()
    assert all(a in (0, 1) for _, a in answers)
    assert sum(truth == a for truth, a in answers) >= 8


def test_the_model_is_loaded_once(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(labeler.MODEL_DIR_ENV, str(model_dir))
    first = labeler.loaded()
    assert labeler.loaded() is first
    p = labeler.probability(image_of(1, 7))
    assert 0.0 <= p <= 1.0


def test_without_model_dir_it_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(labeler.MODEL_DIR_ENV, raising=False)
    with pytest.raises(RuntimeError, match=r"\$GTX_MODEL_DIR is not set"):
        labeler.predict(image_of(0, 0), {})
