"""gtx-stream's replay against crowd-kit's batch methods on real crowds (issue 11, point 6).

Run:  .venv/bin/python benchmarks/bench_crowds.py [--datasets DIR] [--trials N] [--taus ...]
          [--order random|best] [--plot FILE.png]

Needs the optional ``bench`` extra (``pip install -e '.[bench]'``: crowd-kit 1.4.2 and
scikit-learn < 1.6, which its Wawa needs); the project's tests do not.

On each dataset folder of ``--datasets`` (default ``../shared/datasets``; skipped when absent;
nothing is copied from it):

- **Batch, all labels.** crowd-kit's MajorityVote, Wawa, DawidSkene, OneCoinDawidSkene, GLAD and
  MACE (default settings), each ``fit_predict`` once on every recorded label of
  ``answers.csv``, with no gold. Scored on every task with a truth ("all"), and, to compare
  with the replay on the same tasks, on each trial's scored tasks (the replay's gold tasks left
  out), mean over trials ("scored"). MajorityVote's time is the baseline: the other times are
  also given as multiples of it.
- **gtx-stream, streamed.** GTX replayed with :mod:`gtx_stream.offline.replay_stream` (the
  code behind ``gtx-stream replay``; GTX only, not SV/MV/WMV) for each model (one_coin,
  two_coin) and estimate (gold, em; EM refit every 200 labels bought) over a sweep of tau, at
  kappa = the dataset's most labels per task, ``--trials`` trials from seed 0, each task's
  workers asked in ``--order`` (``random``, the default, or ``best``: ``replay --order``).
  Gold: 10% of the tasks per trial (not scored), or possent's assessment set. Its time is per
  trial (one pass over the dataset's tasks).

Per dataset it prints each method's labels per task, accuracy and time, then the fewest labels
per task at which a gtx-stream point reaches crowd-kit MV-all's and DS-all's accuracy on the
scored tasks ("not reached", with the best point, when none does). ``--plot`` draws accuracy
against labels per task, one panel per dataset (needs matplotlib: the ``plot`` extra).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.core.datasets import Dataset, DatasetError, load_dataset  # noqa: E402
from gtx_stream.core.models import Method, ModelName  # noqa: E402
from gtx_stream.offline import replay_stream  # noqa: E402
from gtx_stream.offline.replay import assess  # noqa: E402
from gtx_stream.offline.replay_queues import Order  # noqa: E402
from gtx_stream.offline.replay_stream import Estimate  # noqa: E402

DEFAULT_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
BATCH = ("MajorityVote", "Wawa", "DawidSkene", "OneCoinDawidSkene", "GLAD", "MACE")
"""crowd-kit methods, in the order printed; MajorityVote first: it is the baseline."""
MV_ALL, DS_ALL = "MajorityVote", "DawidSkene"


@dataclass(frozen=True)
class Point:
    """One method's figures on one dataset."""

    name: str
    labels: float
    """Per scored task, mean over trials."""
    accuracy: float
    """On the scored tasks, mean over trials."""
    accuracy_se: float
    seconds: float
    accuracy_all: float = math.nan
    """crowd-kit only: on every task with a truth."""


def mean_se(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values, dtype=np.float64)
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan


def batch(dataset: Dataset, scored: list[tuple[str, ...]]) -> list[Point]:
    """crowd-kit's methods on every recorded label, scored on all truth and per trial."""
    import pandas as pd
    from crowdkit import aggregation

    rows = [(t, w, y) for t, by in dataset.answers.items() for w, y in by.items()]
    df = pd.DataFrame(rows, columns=["task", "worker", "label"])
    truth = pd.Series(dataset.truth)
    per_task = dataset.n_labels / len(dataset.answers)
    points = []
    for name in BATCH:
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # pandas deprecation notices from crowd-kit 1.4.2
            warnings.simplefilter("ignore")
            predicted = getattr(aggregation, name)().fit_predict(df)
        seconds = time.perf_counter() - t0
        right = predicted.reindex(truth.index) == truth
        acc, se = mean_se([float(right[list(tasks)].mean()) for tasks in scored])
        points.append(Point(name, per_task, acc, se, seconds, float(right.mean())))
    return points


@dataclass(frozen=True)
class Result:
    """One dataset's batch points and GTX points (by model and estimate, over tau)."""

    name: str
    batch: list[Point]
    gtx: dict[tuple[ModelName, Estimate], list[Point]]


def gtx(
    dataset: Dataset,
    model: ModelName,
    estimate: Estimate,
    tau: float,
    kappa: int,
    trials: int,
    order: Order,
) -> Point:
    """GTX streamed over ``trials`` trials (seed 0): labels per scored task and accuracy."""
    labels, accs, seconds = [], [], 0.0
    for trial in range(trials):
        t0 = time.perf_counter()
        a = assess(dataset, seed=0, trial=trial)
        s = replay_stream.setup(dataset, a.gold_tasks, a.scored_tasks, 0, trial)
        initial = replay_stream.gold_params(dataset, s, model, "beta", a.accuracies)
        o = replay_stream.stream(
            Method.GTX, s, model, estimate, initial, tau=tau, kappa=kappa, order=order
        )
        seconds += time.perf_counter() - t0
        labels.append(float(np.mean(o.n_labels[s.scored])))
        accs.append(float(np.mean(o.label[s.scored] == s.truth[s.scored])))
    acc, se = mean_se(accs)
    name = f"gtx {model.value} {estimate.value} tau={tau:g}"
    return Point(name, float(np.mean(labels)), acc, se, seconds / trials)


def fmt(x: float, digits: int = 4) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


def reached(points: list[Point], ref: Point) -> str:
    hits = [p for p in points if p.accuracy >= ref.accuracy]
    if hits:
        p = min(hits, key=lambda p: (p.labels, -p.accuracy))
        return f"{p.labels:.2f} ({p.name}: {p.accuracy:.4f})"
    best = max(points, key=lambda p: (p.accuracy, -p.labels))
    return f"not reached (best {best.name}: {best.accuracy:.4f} at {best.labels:.2f})"


def run_dataset(folder: Path, taus: list[float], trials: int, order: Order) -> Result | None:
    try:
        dataset = load_dataset(folder, truthless=True)
    except DatasetError as err:
        print(f"\n{folder.name}: skipped: {err}")
        return None
    kappa = max(len(by) for by in dataset.answers.values())
    scored = [assess(dataset, seed=0, trial=t).scored_tasks for t in range(trials)]
    gold = "the assessment set" if dataset.assessment is not None else "10% gold tasks"
    print(
        f"\n{dataset.name}: {len(dataset.answers)} tasks ({len(dataset.truth)} with truth), "
        f"{len(dataset.workers)} workers, {dataset.n_labels} labels; kappa {kappa}; "
        f"{trials} trials, seed 0; gtx gold: {gold}, order {order.value}; "
        f"{len(scored[0])} scored tasks per trial"
    )
    ck = batch(dataset, scored)
    base = ck[0].seconds
    curves = {
        (model, estimate): [
            gtx(dataset, model, estimate, tau, kappa, trials, order) for tau in taus
        ]
        for model in ModelName
        for estimate in Estimate
    }
    points = [p for curve in curves.values() for p in curve]
    print(
        f"{'method':<30} {'labels/task':>11} {'acc (all)':>9} {'acc (scored)':>16} "
        f"{'time':>9} {'x MV':>7}"
    )
    for p in ck + points:
        print(
            f"{p.name:<30} {p.labels:>11.2f} {fmt(p.accuracy_all):>9} "
            f"{fmt(p.accuracy)} ± {fmt(p.accuracy_se)} {p.seconds:>8.3f}s "
            f"{p.seconds / base:>7.1f}"
        )
    by_name: dict[str, Any] = {p.name: p for p in ck}
    for label, ref in (("MV-all", by_name[MV_ALL]), ("DS-all", by_name[DS_ALL])):
        print(
            f"fewest labels/task reaching {label} (crowd-kit {ref.name}, {ref.accuracy:.4f} "
            f"scored): {reached(points, ref)}"
        )
    return Result(dataset.name, ck, curves)


def plot(results: list[Result], order: Order, path: Path) -> None:
    """Accuracy against labels per task, a panel per dataset: GTX's curves over tau (error
    bars: standard error over trials), MV-all and DS-all as lines, DS-all - 0.3 points and 60%
    of MV-all's labels (issue 11's target 1) dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(results), 2)
    rows = -(-len(results) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.2 * cols, 4.4 * rows), squeeze=False)
    for ax in axes.flat[len(results) :]:
        ax.set_visible(False)
    for ax, res in zip(axes.flat, results, strict=False):
        ref = {p.name: p for p in res.batch}
        mv, ds = ref[MV_ALL], ref[DS_ALL]
        for (model, estimate), curve in res.gtx.items():
            ax.errorbar(
                [p.labels for p in curve],
                [p.accuracy for p in curve],
                yerr=[p.accuracy_se for p in curve],
                marker="o" if estimate is Estimate.EM else "s",
                ms=3,
                capsize=2,
                ls="-" if model is ModelName.TWO_COIN else "--",
                label=f"GTX {model.value} + {estimate.value}",
            )
        ax.axhline(mv.accuracy, color="gray", lw=1)
        ax.axhline(ds.accuracy, color="black", lw=1)
        ax.axhline(ds.accuracy - 0.003, color="black", lw=0.8, ls=":")
        ax.axvline(0.6 * mv.labels, color="gray", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[1], mv.accuracy, " MV-all", va="center", fontsize=7, color="gray")
        ax.text(ax.get_xlim()[1], ds.accuracy, " DS-all", va="center", fontsize=7)
        ax.set_title(f"{res.name} (all labels: {mv.labels:.0f} per task)")
        ax.set_xlabel("labels bought per scored task")
        ax.set_ylabel("accuracy on scored tasks")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        f"GTX streamed (order {order.value}, tau swept) against batch methods on all labels; "
        "dotted: DS-all - 0.3 points and 60% of MV-all's labels",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--taus", type=float, nargs="+", default=[0.8, 0.9, 0.95, 0.99, 0.999])
    ap.add_argument("--order", type=Order, choices=list(Order), default=Order.RANDOM)
    ap.add_argument("--plot", type=Path, help="write the figure to this PNG")
    args = ap.parse_args()
    if args.trials < 1:
        ap.error("--trials must be at least 1")
    try:
        import crowdkit  # noqa: F401
    except ImportError:
        print(
            "crowd-kit is not installed: pip install -e '.[bench]' in the gtx-stream folder; "
            "skipped"
        )
        return
    if not args.datasets.is_dir():
        print(f"{args.datasets}: absent, benchmark skipped")
        return
    folders = sorted(p for p in args.datasets.iterdir() if p.is_dir())
    if not folders:
        print(f"{args.datasets}: no dataset folder, benchmark skipped")
    results = [run_dataset(folder, args.taus, args.trials, args.order) for folder in folders]
    done = [r for r in results if r is not None]
    if args.plot is not None and done:
        plot(done, args.order, args.plot)


if __name__ == "__main__":
    main()
