"""Fine-tuning on an exported folder: ``gtx-stream train DATASET_DIR --out MODEL_DIR``.

Two modes (section 4 of the paper fine-tunes all layers for 3 epochs):

- ``head``: the backbone is frozen (eval mode, batch-norm statistics kept), each image's 1280
  pooled features are computed once and cached in ``MODEL_DIR/features/``, keyed by the
  images' sha256, the image size and the weights, so a second run on the same folder reads
  them back; then only the linear head is trained, a logistic regression on the features
  (mini-batch AdamW, ``--epochs`` passes, 100 by default). On a CPU the features take most of
  the first run (a few images a second); a second run on the same MODEL_DIR trains the head
  alone (about a minute for 850 images and 100 epochs on 2 cores).
- ``full``: every layer is trained, ``--epochs`` passes (3 by default) over the images with
  AdamW (1e-4 for the backbone, 1e-3 for the new head), then the batch-norm statistics are
  recomputed on the training images (:func:`fit_layers` says why). Minutes on a CPU,
  ``--device cuda`` on a GPU.

The loss is binary cross-entropy on one logit, against the hard label or, with ``soft``, the
frame's posterior p1 (the label's probability the pipeline computed). The model is fit on the
folder's ``train`` split and scored on ``val`` (and ``test`` when there is one) against the
folder's labels: :mod:`gtx_stream.train.report`. A model that answers one class for every
image of a scored split that holds both is warned about on stderr and in ``metrics.json``'s
``warnings``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from gtx_stream.train import report
from gtx_stream.train.data import Dataset, Example, load_images, read_dataset, targets
from gtx_stream.train.model import IMAGE_SIZE, MODEL_NAME, Classifier, ModelInfo, save
from gtx_stream.train.progress import Progress

Mode = Literal["head", "full"]
DEFAULT_EPOCHS: dict[str, int] = {"head": 100, "full": 3}
DEFAULT_LR: dict[str, float] = {"head": 1e-3, "full": 1e-4}  # full: the backbone's (head 10x)
MODEL_FILE = "model.pt"
FEATURE_DIR = "features"
EVAL_SPLITS = ("val", "test")


class TrainError(RuntimeError):
    """Training cannot start (one line: no such split, no GPU, ...)."""


@dataclass(frozen=True)
class TrainOptions:
    mode: Mode = "head"
    soft: bool = False
    epochs: int | None = None  # None: DEFAULT_EPOCHS[mode]
    device: str = "cpu"
    seed: int = 0
    batch_size: int = 32
    image_size: int = IMAGE_SIZE
    lr: float | None = None  # None: DEFAULT_LR[mode]
    progress: bool = True

    @property
    def n_epochs(self) -> int:
        return self.epochs if self.epochs is not None else DEFAULT_EPOCHS[self.mode]

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.mode]


@dataclass
class TrainResult:
    out: Path
    metrics: dict[str, Any]
    seconds: float
    files: list[Path] = field(default_factory=list)


def _batches(n: int, size: int, order: Sequence[int] | None = None) -> Iterator[list[int]]:
    index = list(range(n)) if order is None else list(order)
    for start in range(0, n, size):
        yield index[start : start + size]


def _device(name: str) -> torch.device:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainError(f"--device {name}: no CUDA device here (torch {torch.__version__})")
    if name != "cpu" and not name.startswith("cuda"):
        raise TrainError(f"--device must be cpu or cuda[:N], got {name!r}")
    return torch.device(name)


# --- features (head mode) --------------------------------------------------------------------


def compute_features(
    model: Classifier, examples: Sequence[Example], options: TrainOptions, label: str = "features"
) -> np.ndarray:
    """The frozen backbone's pooled features of each example, (N, 1280) float32."""
    device = next(model.parameters()).device
    out = np.empty((len(examples), model.head.in_features), dtype=np.float32)
    bar = Progress(label, len(examples), enabled=options.progress)
    model.eval()
    with torch.inference_mode():
        for index in _batches(len(examples), options.batch_size):
            images = torch.from_numpy(load_images([examples[i] for i in index], options.image_size))
            out[index] = model.features(images.to(device)).cpu().numpy()
            bar.update(len(index))
    bar.close()
    return out


def feature_key(examples: Sequence[Example], image_size: int) -> str:
    """Names a cache file: the images (by sha256, or path), the resolution and the weights."""
    h = hashlib.sha256(f"{MODEL_NAME}:{image_size}".encode())
    for e in examples:
        h.update(f"\n{e.frame_id}:{e.sha256 or e.path}".encode())
    return h.hexdigest()[:16]


def cached_features(
    model: Classifier, examples: Sequence[Example], cache: Path, split: str, options: TrainOptions
) -> np.ndarray:
    """:func:`compute_features`, read from ``cache/<split>-<key>.npy`` when computed before."""
    path = cache / f"{split}-{feature_key(examples, options.image_size)}.npy"
    if path.is_file():
        features: np.ndarray = np.load(path)
        if features.shape == (len(examples), model.head.in_features):
            return features
    features = compute_features(model, examples, options, label=f"features {split}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, features)
    tmp.replace(path)
    return features


# --- fitting ---------------------------------------------------------------------------------

Batch = Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]]
"""Row indices -> (inputs, targets) on the model's device."""


def _fit(
    model: Classifier,
    params: list[dict[str, Any]],
    n: int,
    batch: Batch,
    forward: Callable[[torch.Tensor], torch.Tensor],
    options: TrainOptions,
    unit: str,
) -> list[float]:
    """Mini-batch training with a seeded shuffle; the mean loss of each epoch."""
    optimiser = torch.optim.AdamW(params, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    generator = torch.Generator().manual_seed(options.seed)
    losses = []
    bar = Progress(f"train {options.mode}", options.n_epochs * n, unit=unit,
                   enabled=options.progress)  # fmt: skip
    for _ in range(options.n_epochs):
        total = 0.0
        for index in _batches(
            n, options.batch_size, torch.randperm(n, generator=generator).tolist()
        ):
            x, y = batch(index)
            optimiser.zero_grad()
            loss = loss_fn(forward(x), y)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(index)
            bar.update(len(index))
        losses.append(total / max(n, 1))
    bar.close()
    return losses


def fit_head(
    model: Classifier, features: np.ndarray, y: np.ndarray, options: TrainOptions
) -> list[float]:
    """Train the head alone on cached features (the backbone is not touched)."""
    device = next(model.parameters()).device
    fx = torch.from_numpy(features).to(device)
    fy = torch.from_numpy(y).to(device)
    model.eval()  # the backbone's batch norm stays as pretrained
    model.dropout.train()
    lr = options.learning_rate

    def batch(index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return fx[index], fy[index]

    losses = _fit(model, [{"params": model.head.parameters(), "lr": lr}], len(features), batch,
                  model.logits_of_features, options, unit="ex")  # fmt: skip
    model.eval()
    return losses


def fit_layers(model: Classifier, n: int, batch: Batch, options: TrainOptions) -> list[float]:
    """Train every layer (backbone at ``lr``, the new head at 10x), then recompute batch norm.

    Lite0's batch norm keeps running statistics with momentum 0.01, so after the few dozen
    steps of a small labeled set they are still mostly ImageNet's, while the weights were fit
    to each batch's own statistics. The eval-mode model then normalises with the wrong ones and
    can answer one class for every frame, its training frames included: on the stand-in, 79
    frames trained to a loss of 0.39 scored a balanced error of 0.48 on them and 0.50 held
    out. One pass over the training images with the trained weights (``update_bn``, the
    statistics averaged over the batches) gave 0.00 and 0.40.
    """
    lr = options.learning_rate
    params = [
        {"params": model.backbone.parameters(), "lr": lr},
        {"params": model.head.parameters(), "lr": 10 * lr},
    ]
    model.train()
    losses = _fit(model, params, n, batch, model, options, unit="img")
    update_bn((batch(index) for index in _batches(n, options.batch_size)), model)
    model.eval()
    return losses


def fit_full(
    model: Classifier, examples: Sequence[Example], y: np.ndarray, options: TrainOptions
) -> list[float]:
    """Train every layer on the images (read from disk one batch at a time)."""
    device = next(model.parameters()).device

    def batch(index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        images = load_images([examples[i] for i in index], options.image_size)
        return torch.from_numpy(images).to(device), torch.from_numpy(y[index]).to(device)

    return fit_layers(model, len(examples), batch, options)


def p1_of_features(model: Classifier, features: np.ndarray) -> np.ndarray:
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        logits = model.logits_of_features(torch.from_numpy(features).to(device))
    return torch.sigmoid(logits).double().cpu().numpy()


def p1_of_images(
    model: Classifier, examples: Sequence[Example], options: TrainOptions, label: str
) -> np.ndarray:
    return p1_of_features(model, compute_features(model, examples, options, label=label))


# --- the command -----------------------------------------------------------------------------


def _check_options(
    options: TrainOptions, out: Path, dataset_dir: Path, features_dir: Path | None = None
) -> None:
    """Refuse, before any work, what would fail later with a traceback (or be ignored)."""
    if out.resolve().is_relative_to(dataset_dir.resolve()):
        raise TrainError(f"--out {out} is inside the dataset folder {dataset_dir}: the "
                         "exporter and export --check would find its files there; put the "
                         "model beside the dataset")  # fmt: skip
    for flag, value in (("--epochs", options.n_epochs), ("--batch-size", options.batch_size),
                        ("--image-size", options.image_size)):  # fmt: skip
        if value < 1:
            raise TrainError(f"{flag} must be at least 1, got {value}")
    if options.lr is not None and not options.lr > 0:
        raise TrainError(f"--lr must be above 0, got {options.lr}")
    if out.exists() and not out.is_dir():
        raise TrainError(f"--out {out}: a file, not a folder")
    if features_dir is not None:
        if options.mode != "head":
            raise TrainError(f"--features is for --mode head (--mode {options.mode} caches no "
                             "features)")  # fmt: skip
        if features_dir.exists() and not features_dir.is_dir():
            raise TrainError(f"--features {features_dir}: a file, not a folder")


def _check(dataset: Dataset) -> None:
    train_set = dataset.split("train")
    if not train_set:
        raise TrainError(f"{dataset.root}: no images in the train split ({dataset.rows()})")
    classes = {e.label for e in train_set}
    if len(classes) == 1:
        (label,) = classes
        raise TrainError(
            f"{dataset.root}: all {len(train_set)} images of the train split are class {label} "
            f"({dataset.class_names[label]!r}): a model fit on them would answer {label} for "
            "every frame; label frames of both classes first"
        )
    if not dataset.split("val"):
        raise TrainError(
            f"{dataset.root}: no images in the val split (a small export: lower "
            "export.block_frames, so that more blocks of frames fall into val)"
        )


def train(
    dataset_dir: Path, out: Path, options: TrainOptions, features_dir: Path | None = None
) -> TrainResult:
    """Fit on ``train``, score on ``val`` (and ``test``), write model.pt, metrics.json, PNG.
    Head mode caches the features in ``features_dir`` (default ``out/features``)."""
    started = time.monotonic()
    _check_options(options, out, dataset_dir, features_dir)
    dataset = read_dataset(dataset_dir)
    _check(dataset)
    device = _device(options.device)
    torch.manual_seed(options.seed)
    model = Classifier(options.image_size).to(device)
    train_set = dataset.split("train")
    y = targets(train_set, soft=options.soft)
    out.mkdir(parents=True, exist_ok=True)
    evaluated = {s: dataset.split(s) for s in ("train", *EVAL_SPLITS) if dataset.split(s)}
    p1: dict[str, np.ndarray] = {}
    if options.mode == "head":
        cache = features_dir if features_dir is not None else out / FEATURE_DIR
        features = {s: cached_features(model, ex, cache, s, options) for s, ex in evaluated.items()}
        losses = fit_head(model, features["train"], y, options)
        p1 = {s: p1_of_features(model, f) for s, f in features.items()}
    elif options.mode == "full":
        losses = fit_full(model, train_set, y, options)
        p1 = {s: p1_of_images(model, ex, options, f"predict {s}") for s, ex in evaluated.items()}
    else:
        raise TrainError(f"--mode must be head or full, got {options.mode!r}")
    info = ModelInfo(class_names=dataset.class_names, mode=options.mode,
                     image_size=options.image_size, soft=options.soft)  # fmt: skip
    save(report.temporary(out / MODEL_FILE), model.cpu(), info)  # in place after the metrics
    settings = {**asdict(options), "epochs": options.n_epochs, "lr": options.learning_rate,
                "dataset": str(dataset_dir)}  # fmt: skip
    settings.pop("progress")
    metrics = report.build(
        {s: np.array([e.label for e in ex]) for s, ex in evaluated.items()},
        p1,
        settings={**settings, "class_names": list(dataset.class_names), "losses": losses},
    )
    metrics["warnings"] = one_class_warnings(metrics["splits"], options.mode)
    for warning in metrics["warnings"]:
        print(f"train: warning: {warning}", file=sys.stderr)
    metrics["seconds"] = round(time.monotonic() - started, 3)
    # An interrupted run leaves the earlier run's three files whole (each is renamed in place).
    files = report.write(out, metrics)
    files.insert(0, report.replace(out / MODEL_FILE))
    return TrainResult(out=out, metrics=metrics, seconds=metrics["seconds"], files=files)


def only_class(m: Mapping[str, Any]) -> int | None:
    """The class of every image of a split (None: it holds both, or none)."""
    held = [sum(row) for row in m["confusion_matrix"]]
    return held.index(m["n"]) if m["n"] > 0 and max(held) == m["n"] else None


def one_class(m: Mapping[str, Any]) -> int | None:
    """The class a split's model answers for every one of its images while the split holds
    both (None: it answers both; or the split holds one class, and answering it is right)."""
    answered = [sum(column) for column in zip(*m["confusion_matrix"], strict=True)]
    if m["n"] == 0 or max(answered) != m["n"] or only_class(m) is not None:
        return None
    return answered.index(m["n"])


def one_class_warnings(splits: Mapping[str, Mapping[str, Any]], mode: str) -> list[str]:
    """A line per scored split on which the model answers one class: it learned nothing there."""
    other = "full" if mode == "head" else "head"
    out = []
    for split in EVAL_SPLITS:
        if split in splits and (label := one_class(splits[split])) is not None:
            m = splits[split]
            out.append(f"the model answers {label} for all {m['n']} {split} images (balanced "
                       f"error {m['balanced_error']:.2f}): it has not learned to tell the "
                       f"classes apart; label more frames, or try --mode {other} or another "
                       "--seed")  # fmt: skip
    return out


def summary(result: TrainResult) -> str:
    """One line per scored split, as ``gtx-stream train`` prints them."""
    lines = []
    for split in EVAL_SPLITS:
        m = result.metrics["splits"].get(split)
        if m:
            confusion = json.dumps(m["confusion_matrix"])
            line = (f"{split}: {m['n']} images, balanced error {m['balanced_error']:.4f}, "
                    f"ECE {m['ece']:.4f}, confusion {confusion}")  # fmt: skip
            if (label := one_class(m)) is not None:
                line += f" (the model answers {label} for every image)"
            elif (held := only_class(m)) is not None:
                line += f" (every {split} image is class {held}: a score of that class alone)"
            lines.append(line)
    names = ", ".join(p.name for p in result.files)
    lines.append(f"wrote {names} to {result.out} in {result.seconds:.1f} s")
    return "\n".join(lines)
