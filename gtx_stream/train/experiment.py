"""``gtx-stream experiment finetune``: section 4 of the paper, on the stand-in video.

The plan, as the paper's section 4 and Appendix A describe it:

1. The stand-in's frames (:mod:`gtx_stream.offline.standin`, 1050 by default), each JPEG
   encoded as the ingester stores it, are cut into blocks of ``block_frames`` consecutive
   frames; 10% of the blocks are held out for evaluation and 10% are the assessment set, the
   rest is the pool to label. Blocks, not frames: neighbouring frames are near duplicates, and a
   held-out frame whose neighbour was trained on would flatter every model alike.
2. Per cohort (U(0.8, 1.0), U(0.6, 0.9)) and seed s, ten simulated labelers are trial s of
   :func:`~gtx_stream.offline.simulate.draw` with the images' truths: they answer the
   assessment set (its size is what matters: gold answers, Beta estimate) and the pool, served
   in an order shuffled per seed. :func:`~gtx_stream.offline.simulate.collect.collect` spends
   each budget with MV, WMV (5 labels each), SV and GTX (tau 0.95, kappa 5): the simulator's own
   label collection, example by example.
3. Each labeled set trains a model (``head``: a linear head on the frozen backbone's cached
   features; ``full``: every layer, the paper's 3 epochs, :func:`~gtx_stream.train.fit.fit_layers`),
   ``repeats`` times with seeds shared by all methods, and is scored on the held-out frames
   against their truth: balanced error and ECE (:mod:`gtx_stream.core.metrics`), and
   ``one_class`` when the model answers one class for every held-out frame.

Figures and tests of the results: :mod:`gtx_stream.train.experiment_report`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from gtx_stream.config import IngestSettings
from gtx_stream.core.metrics import balanced_error, expected_calibration_error, predicted
from gtx_stream.core.models import Method
from gtx_stream.offline import standin
from gtx_stream.offline.simulate import COHORTS, TABLE_ORDER, Cohort, draw
from gtx_stream.offline.simulate.collect import Collected, collect
from gtx_stream.train.data import preprocess
from gtx_stream.train.fit import Mode, TrainOptions, fit_head, fit_layers, p1_of_features
from gtx_stream.train.model import MODEL_NAME, Classifier
from gtx_stream.train.progress import Progress

DEFAULT_BUDGETS = (250, 500, 750, 1000, 1500, 2000, 3000, 4000)
EPOCHS = {"head": 30, "full": 3}
BATCH = {"head": 64, "full": 8}
LR = {"head": 3e-3, "full": 3e-4}


@dataclass(frozen=True)
class Plan:
    """Everything that decides the experiment's numbers (written into its JSON)."""

    frames: int = standin.DEFAULT_FRAMES
    standin_seed: int = 0
    seed: int = 0
    seeds: int = 5
    repeats: int = 3
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    methods: tuple[Method, ...] = TABLE_ORDER
    cohorts: tuple[Cohort, ...] = COHORTS
    tau: float = 0.95
    kappa: int = 5
    labelers: int = 10
    heldout_fraction: float = 0.1
    assess_fraction: float = 0.1
    block_frames: int = 10
    mode: Mode = "head"
    image_size: int = 224
    epochs: int | None = None
    lr: float | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.seeds < 1 or self.repeats < 1 or not self.budgets or not self.methods:
            raise ValueError("need at least one seed, repeat, budget and method")
        if min(self.budgets) < 1:
            raise ValueError("budgets must be positive")
        if self.heldout_fraction + self.assess_fraction >= 0.9:
            raise ValueError("held-out and assessment fractions leave too little to label")

    @property
    def n_epochs(self) -> int:
        return self.epochs if self.epochs is not None else EPOCHS[self.mode]

    def options(self, seed: int) -> TrainOptions:
        return TrainOptions(mode=self.mode, epochs=self.n_epochs, device=self.device, seed=seed,
                            batch_size=BATCH[self.mode], image_size=self.image_size,
                            lr=self.lr or LR[self.mode], progress=False)  # fmt: skip

    def describe(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["budgets"] = list(self.budgets)
        d["methods"] = [m.value for m in self.methods]
        d["cohorts"] = [{"name": c.name, "low": c.low, "high": c.high} for c in self.cohorts]
        d["epochs"] = self.n_epochs
        d["lr"] = self.lr or LR[self.mode]
        d["batch_size"] = BATCH[self.mode]
        return d


@dataclass(frozen=True)
class Split:
    """Frame indices: the pool to label and train on, the assessment set, the held-out set."""

    pool: np.ndarray
    assess: np.ndarray
    heldout: np.ndarray


def split_frames(n_frames: int, plan: Plan) -> Split:
    """Whole blocks of consecutive frames go to held-out, assessment and pool (seeded)."""
    blocks = np.arange(n_frames) // plan.block_frames
    n_blocks = int(blocks[-1]) + 1
    order = np.random.default_rng([plan.standin_seed, 4]).permutation(n_blocks)
    n_held = max(1, round(plan.heldout_fraction * n_blocks))
    n_assess = max(1, round(plan.assess_fraction * n_blocks))
    if n_held + n_assess >= n_blocks:
        raise ValueError(f"{n_frames} frames in blocks of {plan.block_frames}: too few blocks")
    held, assess = order[:n_held], order[n_held : n_held + n_assess]
    return Split(
        pool=np.flatnonzero(~np.isin(blocks, order[: n_held + n_assess])),
        assess=np.flatnonzero(np.isin(blocks, assess)),
        heldout=np.flatnonzero(np.isin(blocks, held)),
    )


def label_orders(split: Split, plan: Plan) -> np.ndarray:
    """(seeds, pool): the order in which seed s asks for the pool's frames."""
    return np.stack([np.random.default_rng([plan.seed, 4, s]).permutation(split.pool)
                     for s in range(plan.seeds)])  # fmt: skip


def collect_labels(
    plan: Plan, truth: np.ndarray, split: Split
) -> tuple[np.ndarray, dict[tuple[str, Method, int], list[Collected]]]:
    """The label orders, and per (cohort, method, budget) what each seed's budget labeled."""
    orders = label_orders(split, plan)
    out: dict[tuple[str, Method, int], list[Collected]] = {}
    for cohort in plan.cohorts:
        draws = draw(cohort, trials=plan.seeds, examples=split.pool.size, slots=plan.kappa,
                     labelers=plan.labelers, seed=plan.seed, assess_size=split.assess.size,
                     truth=truth[orders])  # fmt: skip
        accuracies = draws.accuracies("beta")
        for method in plan.methods:
            for budget in plan.budgets:
                out[cohort.name, method, budget] = collect(
                    method, draws, accuracies, budget=budget, kappa=plan.kappa, tau=plan.tau
                )
    return orders, out


# --- the images ------------------------------------------------------------------------------


def standin_images(plan: Plan) -> tuple[list[bytes], np.ndarray]:
    """Every stand-in frame as the JPEG the ingester would store, and the truths."""
    quality = IngestSettings().jpeg_quality
    jpegs, truth = [], []
    for state, image in standin.render_all(plan.frames, plan.standin_seed):
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"cannot encode frame {state.index}")
        jpegs.append(data.tobytes())
        truth.append(state.truth)
    return jpegs, np.array(truth, dtype=np.int8)


def _tensors(jpegs: Sequence[bytes], size: int) -> Iterator[np.ndarray]:
    for data in jpegs:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise RuntimeError("a stand-in frame does not decode")
        yield preprocess(image, size)


def features(model: Classifier, jpegs: Sequence[bytes], plan: Plan, cache: Path | None,
             progress: bool) -> np.ndarray:  # fmt: skip
    """The frozen backbone's pooled features of every frame, cached by the JPEGs' hash."""
    h = hashlib.sha256(f"{MODEL_NAME}:{plan.image_size}".encode())
    for data in jpegs:
        h.update(hashlib.sha256(data).digest())
    path = None if cache is None else cache / f"standin-features-{h.hexdigest()[:16]}.npy"
    if path is not None and path.is_file():
        return np.asarray(np.load(path))
    device = next(model.parameters()).device
    out = np.empty((len(jpegs), model.head.in_features), dtype=np.float32)
    bar = Progress("features", len(jpegs), enabled=progress)
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(jpegs), 32):
            batch = np.stack(list(_tensors(jpegs[start : start + 32], plan.image_size)))
            out[start : start + len(batch)] = model.features(torch.from_numpy(batch).to(device)
                                                             ).cpu().numpy()  # fmt: skip
            bar.update(len(batch))
    bar.close()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, out)
        tmp.replace(path)
    return out


# --- training --------------------------------------------------------------------------------


Fit = Callable[[np.ndarray, np.ndarray, int], np.ndarray]
"""(frame indices, labels, seed) -> p1 on the held-out frames."""


def head_trainer(plan: Plan, jpegs: Sequence[bytes], heldout: np.ndarray, cache: Path | None,
                 progress: bool) -> Fit:  # fmt: skip
    model = Classifier(plan.image_size).to(plan.device)
    feats = features(model, jpegs, plan, cache, progress)
    held = feats[heldout]

    def fit(index: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        torch.manual_seed(seed)
        model.head.reset_parameters()
        fit_head(model, feats[index], y.astype(np.float32), plan.options(seed))
        return p1_of_features(model, held)

    return fit


def full_trainer(plan: Plan, jpegs: Sequence[bytes], heldout: np.ndarray) -> Fit:
    images = torch.from_numpy(np.stack(list(_tensors(jpegs, plan.image_size))))
    pretrained = Classifier(plan.image_size).state_dict()
    device = torch.device(plan.device)

    def fit(index: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
        model = Classifier(plan.image_size, pretrained=False)
        model.load_state_dict(pretrained)
        torch.manual_seed(seed)
        model.head.reset_parameters()
        model.to(device)
        options = plan.options(seed)
        target = torch.from_numpy(y.astype(np.float32))

        def batch(rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            return images[index[rows]].to(device), target[rows].to(device)

        fit_layers(model, len(index), batch, options)  # batch norm recomputed, eval mode
        with torch.inference_mode():
            p1 = [torch.sigmoid(model(images[heldout[i : i + 64]].to(device))).double().cpu()
                  for i in range(0, heldout.size, 64)]  # fmt: skip
        return torch.cat(p1).numpy()

    return fit


def train_seed(plan: Plan, s: int, repeat: int) -> int:
    """The training seed of seed s, repeat r: the same for every method and budget (paired)."""
    return int(np.random.SeedSequence([plan.seed, 5, s, repeat]).generate_state(1)[0] % 2**31)


@dataclass
class Result:
    plan: Plan
    split: Split
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def run(plan: Plan, cache: Path | None = None, progress: bool = True) -> Result:
    """The whole grid: collection, then every (cohort, method, budget, seed, repeat) training."""
    t0 = time.monotonic()
    jpegs, truth = standin_images(plan)
    split = split_frames(len(jpegs), plan)
    orders, labeled = collect_labels(plan, truth, split)
    result = Result(plan, split)
    result.seconds["collect"] = time.monotonic() - t0
    t1 = time.monotonic()
    if plan.mode == "head":
        fit = head_trainer(plan, jpegs, split.heldout, cache, progress)
    else:
        fit = full_trainer(plan, jpegs, split.heldout)
    result.seconds["features"] = time.monotonic() - t1
    y_held = truth[split.heldout]
    bar = Progress("train runs", len(labeled) * plan.seeds * plan.repeats, unit="run",
                   enabled=progress)  # fmt: skip
    t2 = time.monotonic()
    for (cohort, method, budget), per_seed in labeled.items():
        for s, c in enumerate(per_seed):
            index = orders[s, : c.n_labeled]
            for r in range(plan.repeats):
                started = time.monotonic()
                p1 = fit(index, c.label, train_seed(plan, s, r))
                result.rows.append({
                    "cohort": cohort, "method": method.value, "budget": budget, "seed": s,
                    "repeat": r, "n_train": c.n_labeled, "labels_used": c.labels_used,
                    "label_error": c.errors(truth[index]) / c.n_labeled,
                    "balanced_error": balanced_error(y_held, predicted(p1)),
                    "ece": expected_calibration_error(y_held, p1),
                    "one_class": bool(np.ptp(predicted(p1)) == 0),
                    "seconds": time.monotonic() - started,
                })  # fmt: skip
                bar.update()
    bar.close()
    result.seconds["train"] = time.monotonic() - t2
    result.seconds["total"] = time.monotonic() - t0
    return result
