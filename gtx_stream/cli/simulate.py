"""`gtx-stream simulate threshold|uncertainty`: the paper's synthetic experiments (section 3)."""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import math
import os
import sys
import threading
from typing import Any

from gtx_stream.cli.options import non_negative_int
from gtx_stream.cli.simulate_report import (
    format_threshold,
    format_uncertainty,
    plot,
    threshold_document,
    uncertainty_document,
)
from gtx_stream.core.models import ModelName
from gtx_stream.offline.simulate import (
    ALL_COHORTS,
    COHORTS,
    DEFAULT_EVERY,
    TABLE_ORDER,
    TWO_COIN_COHORTS,
    Accuracy,
    Cohort,
    run_threshold,
    run_uncertainty,
)
from gtx_stream.train.progress import Progress

DEFAULT_ASSESS_SIZE = 20


def register(sub: Any) -> None:
    p = sub.add_parser(
        "simulate",
        help="reproduce the paper's synthetic experiments (Tables 1 and 2, Figures 1 and 2)",
        description="Reproduce section 3 of the paper with simulated labelers.",
    )
    which = p.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")

    t = which.add_parser(
        "threshold",
        help="section 3.3: confidence threshold (Table 1, Figure 1)",
        description=(
            "Section 3.3: a budget of B labels; each example is asked of labelers drawn without "
            "replacement until its confidence reaches tau or kappa labels are in (GTX, SV), or "
            "for a fixed k = 1..kappa labels (MV, WMV). Reports, per cohort and method, the "
            "setting with the lowest error (Table 1); --all shows every setting."
        ),
    )
    _common(t, trials=100)
    t.add_argument(
        "--taus",
        default="0.85:0.99:0.01",
        help="tau sweep: START:STOP:STEP (inclusive) or a comma list (default 0.85:0.99:0.01)",
    )
    t.add_argument("--kappa", type=int, default=5, help="most labels per example (default 5)")
    t.add_argument("--all", action="store_true", help="print every setting, not only the best")
    t.add_argument(
        "--every",
        type=int,
        default=None,
        help=f"with --accuracy em: refit EM after every N labels bought (default {DEFAULT_EVERY})",
    )
    t.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="threads, one cohort each (default: 2, or 1 on a single core)",
    )
    t.add_argument("--quiet", action="store_true",
                   help="no progress line (on stderr) while --accuracy em runs")  # fmt: skip
    t.set_defaults(func=_run_threshold)

    u = which.add_parser(
        "uncertainty",
        help="section 3.4: uncertainty sampling (Table 2, Figure 2)",
        description=(
            "Section 3.4: every example is labeled once, then the example of highest "
            "uncertainty (equation 5; random tie-break) gets its next labeler, until the "
            "budget is spent. Reports the final error and MAE (Table 2)."
        ),
    )
    _common(u, trials=10)
    u.add_argument("--examples", type=int, default=5000, help="dataset size M (default 5000)")
    u.add_argument(
        "--tie-break",
        choices=["random", "fewest"],
        default="random",
        help="among equally uncertain examples pick a random one, or a random one of those "
        "with the fewest labels (default random)",
    )
    u.add_argument(
        "--curve-every",
        type=int,
        default=100,
        help="in --json, a curve point every this many labels (default 100)",
    )
    u.set_defaults(func=_run_uncertainty)


def _common(p: argparse.ArgumentParser, trials: int) -> None:
    p.add_argument("--trials", type=int, default=trials, help=f"trials (default {trials})")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed (default 0)")
    p.add_argument("--budget", type=int, default=15000, help="labels B (default 15000)")
    p.add_argument("--labelers", type=int, default=10, help="labelers per trial (default 10)")
    p.add_argument(
        "--accuracy",
        default="true",
        help="accuracies the methods use: true, mle (equation 4) or beta (Beta(1, 1) mean) from "
        "the gold items, em (threshold only: semi-supervised EM over the gold items and the "
        "labels bought so far, refit every --every labels), or a comma list to compare them on "
        "the same trials (default true)",
    )
    p.add_argument(
        "--model",
        choices=[m.value for m in ModelName],
        default=ModelName.ONE_COIN.value,
        help="GTX's labeler model: one accuracy, or a sensitivity and a specificity per labeler "
        "(estimated from its gold items per class); MV, WMV and SV stay one-coin "
        "(default one_coin)",
    )
    p.add_argument(
        "--assess-size",
        type=int,
        default=None,
        help=f"gold items per labeler for mle and beta (default {DEFAULT_ASSESS_SIZE})",
    )
    p.add_argument(
        "--cohort",
        choices=["both", "two_coin", "all", *(c.name for c in ALL_COHORTS)],
        default="both",
        help="labeler cohort: both of the paper's (accurate, less_accurate), the two whose "
        "errors depend on the true class (class_conditional, misses_positives), all four, or "
        "one (default both)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document with every row")
    p.add_argument("--plot", metavar="DIR", help="write the figures as PNG files into DIR")


class UsageError(ValueError):
    """A bad command-line value."""


def parse_taus(text: str) -> tuple[float, ...]:
    """``0.85:0.99:0.01`` (inclusive) or ``0.9,0.95,0.99``."""
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise UsageError("--taus step must be positive")
            n = int(math.floor((stop - start) / step + 1e-9)) + 1
            taus = tuple(round(start + i * step, 10) for i in range(max(n, 0)))
        else:
            taus = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as err:
        if isinstance(err, UsageError):
            raise
        raise UsageError(f"--taus: cannot read {text!r}") from None
    if not taus:
        raise UsageError("--taus: no tau given")
    if any(not 0.5 < t < 1.0 for t in taus):
        raise UsageError("--taus: every tau must be in (0.5, 1)")
    if list(taus) != sorted(set(taus)):
        raise UsageError("--taus: taus must be increasing")
    return taus


def parse_estimators(text: str) -> tuple[Accuracy, ...]:
    out = []
    for part in text.split(","):
        try:
            out.append(Accuracy(part.strip()))
        except ValueError:
            raise UsageError(
                f"--accuracy: {part.strip()!r} is not one of true, mle, beta, em"
            ) from None
    if len(set(out)) != len(out):
        raise UsageError("--accuracy: an estimator is repeated")
    return tuple(out)


def _settings(args: argparse.Namespace) -> tuple[tuple[Accuracy, ...], int, tuple[Cohort, ...]]:
    estimators = parse_estimators(args.accuracy)
    estimated = any(e is not Accuracy.TRUE for e in estimators)
    assess = args.assess_size
    if assess is None:
        assess = DEFAULT_ASSESS_SIZE if estimated else 0
    elif not estimated:
        raise UsageError("--assess-size is the gold items of mle, beta or em: true accuracies "
                         "use none (give --accuracy mle, beta or em, or a comma list)")  # fmt: skip
    if assess < 0 or (estimated and assess == 0):
        raise UsageError(
            "--assess-size must be a positive number of gold items for mle, beta or em"
        )
    if args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.budget < 1:
        raise UsageError("--budget must be at least 1")
    if args.labelers < 1 or args.labelers > 127:
        raise UsageError("--labelers must be in 1..127")
    chosen = {"both": COHORTS, "two_coin": TWO_COIN_COHORTS, "all": ALL_COHORTS}.get(args.cohort)
    cohorts = tuple(chosen or (c for c in ALL_COHORTS if c.name == args.cohort))
    return estimators, assess, cohorts


def _keep_freed_memory() -> None:
    """Ask glibc to keep freed memory for reuse rather than hand it back to the kernel.

    The simulator allocates and frees arrays of tens of MB thousands of times; by default
    glibc returns each to the kernel, and the next one costs a page fault per 4 kB page (about
    a fifth of the run's CPU time). The process is short-lived, so holding the memory is cheap.
    Elsewhere than glibc this does nothing.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 32 << 20)  # glibc's largest: bigger arrays are still mmapped
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 64 << 20)


def _fail(err: Exception) -> int:
    print(f"gtx-stream simulate: error: {err}", file=sys.stderr)
    return 2


# ---------------------------------------------------------------------------------------------
# threshold


def _run_threshold(args: argparse.Namespace) -> int:
    _keep_freed_memory()
    try:
        estimators, assess, cohorts = _settings(args)
        taus = parse_taus(args.taus)
        if not 1 <= args.kappa <= args.labelers:
            raise UsageError("--kappa must be in 1..labelers")
        if args.jobs < 1:
            raise UsageError("--jobs must be at least 1")
        if args.every is not None and Accuracy.EM not in estimators:
            raise UsageError("--every is EM's refit cadence: it goes with --accuracy em")
        args.every = DEFAULT_EVERY if args.every is None else args.every
        if args.every < 1:
            raise UsageError("--every must be at least 1")
        # thousands of fits: a guard's fallback is routine here, not news for the log
        em_log = logging.getLogger("gtx_stream.core.em")
        level = em_log.level
        em_log.setLevel(logging.WARNING)
        try:
            results = _threshold(args, taus, estimators, assess, cohorts)
        finally:
            em_log.setLevel(level)
    except ValueError as err:
        return _fail(err)
    doc = threshold_document(results, args, taus, assess)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_threshold(doc, cohorts, show_all=args.all))
    if args.plot:
        return plot(args.plot, "threshold", results, cohorts, args.model)
    return 0


def _threshold(
    args: argparse.Namespace,
    taus: tuple[float, ...],
    estimators: tuple[Accuracy, ...],
    assess: int,
    cohorts: tuple[Cohort, ...],
) -> dict[Accuracy, Any]:
    bar = None
    if Accuracy.EM in estimators:  # minutes: each setting is a stream of its own
        per_cohort = sum(len(taus) if m.uses_threshold else args.kappa for m in TABLE_ORDER)
        bar = Progress("simulate em settings", per_cohort * len(cohorts), unit="setting",
                       enabled=not args.quiet)  # fmt: skip
    lock = threading.Lock()  # the cohorts run in threads

    def one_setting() -> None:
        if bar is not None:
            with lock:
                bar.update()

    results = run_threshold(
        trials=args.trials,
        seed=args.seed,
        budget=args.budget,
        kappa=args.kappa,
        labelers=args.labelers,
        taus=taus,
        estimators=estimators,
        assess_size=assess,
        cohorts=cohorts,
        jobs=args.jobs,
        model=args.model,
        every=args.every,
        on_em_setting=one_setting,
    )
    if bar is not None:
        bar.close()
    return results


def _run_uncertainty(args: argparse.Namespace) -> int:
    _keep_freed_memory()
    try:
        estimators, assess, cohorts = _settings(args)
        if args.examples < 1:
            raise UsageError("--examples must be at least 1")
        if not args.examples <= args.budget <= args.examples * args.labelers:
            raise UsageError(
                f"--budget {args.budget} must be between --examples ({args.examples}: each "
                f"labeled once first) and examples x labelers ({args.examples * args.labelers})"
            )
        if args.curve_every < 1:
            raise UsageError("--curve-every must be at least 1")
        if Accuracy.EM in estimators:
            raise UsageError("--accuracy em is simulated for the threshold experiment only")
        results = run_uncertainty(
            trials=args.trials,
            seed=args.seed,
            examples=args.examples,
            budget=args.budget,
            labelers=args.labelers,
            estimators=estimators,
            assess_size=assess,
            cohorts=cohorts,
            fewest_first=args.tie_break == "fewest",
            model=args.model,
        )
    except ValueError as err:
        return _fail(err)
    doc = uncertainty_document(results, args, assess)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(format_uncertainty(doc, cohorts))
    if args.plot:
        return plot(args.plot, "uncertainty", results, cohorts, args.model)
    return 0
