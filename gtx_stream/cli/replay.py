"""`gtx-stream replay DATASET_DIR`: the confidence-threshold strategy, or uncertainty sampling
with a budget, on real crowd labels."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from typing import Any

from gtx_stream.cli.options import non_negative_int, positive_int
from gtx_stream.cli.output import json_safe
from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.datasets import Dataset, DatasetError, load_dataset
from gtx_stream.core.models import ModelName
from gtx_stream.offline.replay import REFERENCES, Report, Row, assess, replay
from gtx_stream.offline.replay_queues import Order
from gtx_stream.offline.replay_stream import DEFAULT_EVERY, Estimate
from gtx_stream.offline.replay_uncertainty import STRATEGIES
from gtx_stream.train.progress import Progress

ASSESS_FRACTION = 0.1
"""--assess-fraction when not given."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a real crowdsourced dataset through the confidence-threshold strategy",
        description=(
            "Replay the recorded labels of a dataset folder (answers.csv, truth.csv, optional "
            "assessment_answers.csv + assessment_truth.csv) in random order per task, stop "
            "early with GTX and SV (tau) or after k = kappa labels with MV and WMV, and report "
            "labels per task, accuracy, MAE and tasks that ran out of labelers, averaged over "
            "trials, with majority vote over all recorded labels as the reference. Tasks without "
            "a row in truth.csv are never scored; they are labeled too where the tasks run as a "
            "stream (--model two_coin, --estimate em or --order best), and the header counts "
            "them."
        ),
    )
    p.add_argument("dataset_dir", metavar="DATASET_DIR", help="folder with answers.csv, truth.csv")
    p.add_argument("--tau", type=float, default=0.99, help="confidence threshold (default 0.99)")
    p.add_argument(
        "--kappa",
        type=positive_int,
        default=5,
        help="most labels per task; k of MV and WMV (default 5)",
    )
    p.add_argument(
        "--trials", type=positive_int, default=10, help="random label orders (default 10)"
    )
    p.add_argument(
        "--seed", type=non_negative_int, default=0, help="trial t uses seed + t (default 0)"
    )
    p.add_argument(
        "--assess-fraction",
        type=float,
        default=None,
        help="share of tasks drawn as gold for the accuracies when the folder has no "
        f"assessment set; they are not scored (default {ASSESS_FRACTION:g})",
    )
    p.add_argument(
        "--accuracy",
        choices=[Estimator.BETA.value, Estimator.MLE.value],
        default=Estimator.BETA.value,
        help="accuracy estimator: Beta(1, 1) posterior mean or the MLE of eq. (4) (default beta)",
    )
    p.add_argument(
        "--model",
        choices=[m.value for m in ModelName],
        default=ModelName.ONE_COIN.value,
        help="labeler model behind GTX: one accuracy, or sensitivity and specificity "
        "(default one_coin)",
    )
    p.add_argument(
        "--estimate",
        choices=[e.value for e in Estimate],
        default=Estimate.GOLD.value,
        help="labeler parameters from gold only, or re-estimated by semi-supervised EM over the "
        "labels bought so far plus gold (default gold)",
    )
    p.add_argument(
        "--every",
        type=int,
        default=None,
        help=f"with --estimate em: refit after every N labels bought (default {DEFAULT_EVERY})",
    )
    p.add_argument(
        "--order",
        choices=[o.value for o in Order],
        default=Order.RANDOM.value,
        help="which of a task's recorded workers is asked next: random (seeded), or best: the "
        "one of highest estimated accuracy (balanced accuracy for two_coin) under the "
        "parameters in force when the task arrives, as aggregator.dispatch = best (default "
        "random)",
    )
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="threshold",
        help="threshold: stop each task at tau or kappa labels (strategy 1); uncertainty: label "
        "every scored task once, then always the most uncertain task next, until --budget "
        "labels are spent (strategy 2; one-coin from gold only) (default threshold)",
    )
    p.add_argument(
        "--budget",
        type=int,
        default=None,
        help="with --strategy uncertainty: labels to spend over all scored tasks (at least one "
        "per task; kappa still caps each task)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document with every row")
    p.add_argument("--quiet", action="store_true", help="no progress line (on stderr)")
    p.set_defaults(func=_run)


def _refusal(args: argparse.Namespace) -> str | None:
    """An option given that the run would ignore (None: none)."""
    if args.every is not None and args.estimate != Estimate.EM.value:
        return "--every is the EM refit cadence: it goes with --estimate em"
    return None


def _unweighed(dataset: Dataset, args: argparse.Namespace) -> str | None:
    """Why no worker would get an accuracy from gold (None: some do). Every worker at 0.5
    gives every task the posterior 0.5: GTX and SV never stop early and break ties, which
    scored 0.44 on temp with --assess-fraction 0. EM learns them from the labels instead."""
    if args.estimate == Estimate.EM.value:
        return None
    first = assess(dataset, seed=args.seed, assess_fraction=args.assess_fraction,
                   estimator=args.accuracy)  # fmt: skip
    if first.unassessed < len(dataset.workers):
        return None
    if dataset.assessment is not None:
        why = "no worker answered an item of its assessment set"
    elif first.gold_tasks:
        why = f"no worker answered its {len(first.gold_tasks)} gold tasks"
    else:
        why = (f"it has no assessment set, and --assess-fraction {args.assess_fraction:g} "
               f"draws none of its {len(dataset.truth)} tasks as gold")  # fmt: skip
    return (
        f"{dataset.name}: {why}, so every worker would weigh 0.5 and GTX and SV would "
        "only break ties: give a larger --assess-fraction, or --estimate em"
    )


def _run(args: argparse.Namespace) -> int:
    refusal = _refusal(args)
    if refusal is not None:
        print(f"gtx-stream replay: error: {refusal}", file=sys.stderr)
        return 2
    bar = Progress("replay trials", args.trials, unit="trial", enabled=not args.quiet)
    try:
        dataset = load_dataset(args.dataset_dir, truthless=True)
        if args.assess_fraction is None:
            args.assess_fraction = ASSESS_FRACTION
        elif dataset.assessment is not None:
            print(f"note: {dataset.name} has an assessment set, so --assess-fraction is not "
                  "used (every task of truth.csv is scored)", file=sys.stderr)  # fmt: skip
        unweighed = _unweighed(dataset, args)
        if unweighed is not None:
            raise ValueError(unweighed)
        report = replay(
            dataset,
            tau=args.tau,
            kappa=args.kappa,
            trials=args.trials,
            seed=args.seed,
            assess_fraction=args.assess_fraction,
            estimator=args.accuracy,
            model=args.model,
            estimate=args.estimate,
            every=DEFAULT_EVERY if args.every is None else args.every,
            strategy=args.strategy,
            budget=args.budget,
            order=args.order,
            on_trial=bar.update,
        )
    except (DatasetError, ValueError) as err:
        print(f"gtx-stream replay: error: {err}", file=sys.stderr)
        return 2
    bar.close()
    print(to_json(report) if args.json else format_report(report))
    return 0


def to_json(report: Report) -> str:
    """The report as one JSON document; a standard error of a single trial is null."""
    return json.dumps(json_safe(dataclasses.asdict(report)), indent=2)


def _pm(mean: float, se: float, digits: int) -> str:
    se_text = "-" if math.isnan(se) else f"{se:.{digits}f}"
    return f"{mean:.{digits}f} ± {se_text}"


def _rule(row: Row, report: Report) -> str:
    if report.strategy == "uncertainty" and row.method not in REFERENCES:
        return f"B={report.budget}"
    if row.tau is not None:
        return f"tau={row.tau:g}"
    if row.k is not None:
        return f"k={row.k}"
    return "all labels"


def streamed(report: Report) -> bool:
    """Whether the tasks ran as a stream (:mod:`~gtx_stream.offline.replay_stream`), where a
    task without a truth is labeled too (its labels count for EM)."""
    gold_one_coin = (report.model, report.estimate) == (ModelName.ONE_COIN.value,
                                                        Estimate.GOLD.value)  # fmt: skip
    return report.strategy == "threshold" and (report.order == Order.BEST.value
                                               or not gold_one_coin)  # fmt: skip


def format_report(report: Report) -> str:
    """Readable header and table; figures are means over trials ± standard errors."""
    if report.assessment == "assessment set":
        source = "the dataset's assessment set"
    else:
        source = f"{report.n_gold} gold tasks per trial, not scored"
    if report.estimate == Estimate.EM.value:
        params = (
            f"{report.model} parameters by EM over the labels bought so far plus gold, refit "
            f"every {report.every} labels ({report.fits:g} fits per trial for gtx), starting "
            f"from EM over the gold answers of {source}; "
            f"{report.unassessed:g} workers without an assessment item get the pooled prior"
        )
    else:
        params = (
            f"{report.estimator} estimate from {source}; {report.unassessed:g} workers "
            "without an assessment item get 0.5"
        )
        if report.model != ModelName.ONE_COIN.value:
            params = f"{report.model} {params}"
    head = [
        f"replay {report.dataset}: {report.n_tasks} tasks, {report.n_workers} workers, "
        f"{report.n_labels} labels; {report.trials} trial{'s' * (report.trials != 1)}, "
        f"seed {report.seed}",
        f"{'accuracies' if report.model == ModelName.ONE_COIN.value else 'parameters'}: "
        f"{params} (mean over trials)",
        f"scored tasks: {report.rows[0].n_tasks:g}; tau {report.tau:g}, kappa {report.kappa}"
        + ("; best-first order" if report.order == Order.BEST.value else "")
        + (
            f"; uncertainty sampling, budget {report.budget} labels "
            f"({report.budget / report.rows[0].n_tasks:.2f} per task)"
            if report.strategy == "uncertainty" and report.budget
            else ""
        ),
        "",
    ]
    if report.truthless:
        done = "labeled, not scored" if streamed(report) else "left out (no row in truth.csv)"
        head.insert(-1, f"tasks without a truth: {report.truthless}, {done}")
    columns = ("method", "rule", "labels/task", "accuracy", "error", "MAE", "ran out")
    table = [columns]
    for row in report.rows:
        table.append(
            (
                row.method,
                _rule(row, report),
                _pm(row.avg_k, row.avg_k_se, 2),
                _pm(row.accuracy, row.accuracy_se, 4),
                _pm(row.error, row.error_se, 4),
                _pm(row.mae, row.mae_se, 4),
                "-" if row.method in REFERENCES else _pm(row.exhausted, row.exhausted_se, 1),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in table
    ]
    return "\n".join(head + lines)
