"""Semi-supervised Dawid-Skene EM (core.em): its time per fit, and its accuracy on real crowds.

Run:  .venv/bin/python benchmarks/bench_em.py [--labels 100000 1000000] [--datasets DIR]

Speed: seeded simulated crowds of 10^5 and 10^6 labels (5 labels per task, 100 labelers of
accuracy 0.55-0.95, 2% of tasks gold), one EM fit each for ``one_coin`` and ``two_coin``,
best of ``--repeat``. The baseline, measured in the same run on the same arrays, is one
``np.bincount`` pass over the labels (the floor of any pass over them); the ratio is EM's time
over it, and "per iteration" divides that by EM's iterations.

Accuracy: on each dataset folder of ``--datasets`` (default ``../shared/datasets``; skipped
when absent), majority vote over all recorded labels (MV-all, ties to 1), against EM on all
labels with no gold and with ``--gold`` random tasks of gold (seeded), scored on the tasks that
are not gold. Nothing is copied from the folder.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gtx_stream.core.datasets import DatasetError, load_dataset  # noqa: E402
from gtx_stream.core.em import EMSettings, dawid_skene  # noqa: E402
from gtx_stream.core.models import ModelName  # noqa: E402

DEFAULT_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def simulated(labels: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """task, labeler, label arrays (5 labels per task) and gold (2% of tasks, else -1)."""
    rng = np.random.default_rng(seed)
    tasks, per_task, labelers = labels // 5, 5, 100
    acc = rng.uniform(0.55, 0.95, labelers)
    truth = rng.integers(0, 2, tasks)
    task = np.repeat(np.arange(tasks), per_task)
    # five distinct labelers per task: a random offset and stride over the cohort
    start = rng.integers(0, labelers, tasks)
    labeler = (start[:, None] + np.arange(per_task) * 7) % labelers
    labeler = labeler.ravel()
    right = rng.random(task.size) < acc[labeler]
    label = np.where(right, truth[task], 1 - truth[task])
    gold = np.where(rng.random(tasks) < 0.02, truth, -1)
    return task, labeler, label, gold


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def speed(sizes: list[int], repeat: int) -> None:
    print(f"EM time per fit (best of {repeat}), against one bincount pass over the labels")
    print(
        f"{'labels':>9} {'model':>9} {'bincount':>9} {'EM':>9} {'ratio':>7} {'iters':>5} "
        f"{'per iter':>8}"
    )
    for n in sizes:
        task, labeler, label, gold = simulated(n)
        base = best_of(repeat, functools.partial(np.bincount, task, weights=label))
        for model in ModelName:
            settings = EMSettings(model=model)
            fit = dawid_skene(task, labeler, label, gold, settings)
            t = best_of(
                repeat, functools.partial(dawid_skene, task, labeler, label, gold, settings)
            )
            print(
                f"{n:>9,} {model.value:>9} {base * 1e3:>7.2f}ms {t * 1e3:>7.1f}ms "
                f"{t / base:>7.0f} {fit.iterations:>5} {t / base / fit.iterations:>8.1f}"
            )


def accuracy(folder: Path, n_gold: int, seed: int) -> None:
    if not folder.is_dir():
        print(f"\n{folder}: absent, accuracy on real crowds skipped")
        return
    print(f"\nAccuracy on {folder} (EM with {n_gold} random gold tasks: scored without them)")
    print(
        f"{'dataset':>10} {'MV-all':>7} {'EM-1c':>7} {'EM-2c':>7} {'EM-1c+g':>8} {'EM-2c+g':>8}"
        f" {'fallbacks':>9}"
    )
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            ds = load_dataset(sub)
        except DatasetError as err:
            print(f"{sub.name:>10} skipped: {err}")
            continue
        tasks = sorted(ds.answers)
        workers = {w: j for j, w in enumerate(ds.workers)}
        index = {t: i for i, t in enumerate(tasks)}
        rows = [(index[t], workers[w], y) for t, by in ds.answers.items() for w, y in by.items()]
        task, labeler, label = (np.array(c) for c in zip(*rows, strict=True))
        truth = np.array([ds.truth[t] for t in tasks])
        ones = np.bincount(task, weights=label, minlength=len(tasks))
        total = np.bincount(task, minlength=len(tasks))
        mv = np.where(2 * ones >= total, 1, 0)
        rng = np.random.default_rng(seed)
        gold_tasks = rng.choice(len(tasks), size=min(n_gold, len(tasks)), replace=False)
        scored = np.ones(len(tasks), bool)
        scored[gold_tasks] = False
        gold = {int(i): int(truth[i]) for i in gold_tasks}
        cells, fallbacks = [], 0
        for g in (None, gold):
            for model in ModelName:
                fit = dawid_skene(task, labeler, label, g, EMSettings(model=model))
                cells.append(np.mean((fit.p1[scored] > 0.5) == truth[scored]))
                fallbacks += len(fit.fallbacks)
        mv_acc = np.mean(mv[scored] == truth[scored])
        print(
            f"{ds.name:>10} {mv_acc:>7.3f} {cells[0]:>7.3f} {cells[1]:>7.3f} {cells[2]:>8.3f}"
            f" {cells[3]:>8.3f} {fallbacks:>9}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labels", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    ap.add_argument("--gold", type=int, default=20, help="random gold tasks per dataset")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    speed(args.labels, args.repeat)
    accuracy(args.datasets, args.gold, args.seed)


if __name__ == "__main__":
    main()
