"""What ``gtx-stream simulate`` prints: the JSON document, the tables, and the figures."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gtx_stream.cli.output import json_safe
from gtx_stream.core.models import Method, ModelName
from gtx_stream.offline.simulate import (
    TABLE_ORDER,
    Accuracy,
    Cohort,
    Curves,
    Outcome,
    best_outcomes,
)

# ---------------------------------------------------------------------------------------------
# threshold


def _trials(n: int) -> str:
    return f"{n} trial" if n == 1 else f"{n} trials"


def threshold_document(
    results: dict[Accuracy, list[Outcome]],
    args: argparse.Namespace,
    taus: Sequence[float],
    assess: int,
) -> dict[str, Any]:
    rows = []
    for est, outcomes in results.items():
        best = {id(o) for o in best_outcomes(outcomes).values()}
        for o in outcomes:
            rows.append(
                o.row(
                    accuracy=est.value,
                    assess_size=assess if est is not Accuracy.TRUE else None,
                    best=id(o) in best,
                )
            )
    return json_safe(
        {
            "experiment": "threshold",
            "trials": args.trials,
            "seed": args.seed,
            "budget": args.budget,
            "kappa": args.kappa,
            "labelers": args.labelers,
            "taus": list(taus),
            "model": args.model,
            "every": args.every if Accuracy.EM in results else None,
            "rows": rows,
        }
    )


def _pct(mean: float | None, se: float | None) -> str:
    if mean is None:
        return "-"
    digits = 2 if abs(mean) < 0.1 else 1
    tail = "" if se is None else f" (± {100 * se:.2f}%)"
    return f"{100 * mean:.{digits}f}%{tail}"


def _table(lines: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    ]


def _accuracy_text(row: dict[str, Any], doc: dict[str, Any]) -> str:
    two_coin = doc.get("model") == ModelName.TWO_COIN.value
    what = "GTX two-coin, true coins" if two_coin else "true accuracies"
    if row["accuracy"] == "em":
        what = (
            f"em parameters from {row['assess_size']} gold items per labeler and the labels "
            f"bought, refit every {doc['every']} labels"
        )
        return f"GTX two-coin, {what}" if two_coin else what
    if row["accuracy"] != "true":
        kind = "coins" if two_coin else "accuracies"
        what = f"{row['accuracy']} {kind} from {row['assess_size']} gold items per labeler"
        return f"GTX two-coin, {what}" if two_coin else what
    return what


def format_threshold(doc: dict[str, Any], cohorts: Sequence[Cohort], show_all: bool) -> str:
    out = []
    estimators = list(dict.fromkeys(r["accuracy"] for r in doc["rows"]))
    for est in estimators:
        for cohort in cohorts:
            rows = [r for r in doc["rows"] if r["accuracy"] == est and r["cohort"] == cohort.name]
            if not show_all:
                rows = [r for r in rows if r["best"]]
            rows.sort(
                key=lambda r: (TABLE_ORDER.index(Method(r["method"])), r["tau"] or 0, r["k"] or 0)
            )
            out.append(
                f"{cohort.title}: {_trials(doc['trials'])}, B = {doc['budget']}, "
                f"kappa = {doc['kappa']}, {_accuracy_text(rows[0], doc)}"
            )
            head = ("method", "avg k", "tau" if show_all else "best tau", "k", "labeled N")
            lines: list[tuple[str, ...]] = [(*head, "error rate", "MAE")]
            for r in rows:
                se_n = r["n_labeled_se"] or 0.0
                lines.append(
                    (
                        r["method"].upper(),
                        f"{r['avg_k']:.2f}",
                        "-" if r["tau"] is None else f"{r['tau']:g}",
                        "-" if r["k"] is None else str(r["k"]),
                        f"{r['n_labeled']:,.0f} ± {se_n:.1f}",
                        _pct(r["error"], r["error_se"]),
                        _pct(r["mae"], r["mae_se"]),
                    )
                )
            out += _table(lines)
            out.append("")
    out.append(
        "Means over trials; ± is the standard error over trials. "
        + ("" if show_all else "Per method, the setting with the lowest error.")
    )
    return "\n".join(out).rstrip()


# ---------------------------------------------------------------------------------------------
# uncertainty


# ---------------------------------------------------------------------------------------------
# uncertainty


def uncertainty_document(
    results: dict[Accuracy, list[Curves]], args: argparse.Namespace, assess: int
) -> dict[str, Any]:
    rows, curves = [], []
    for est, runs in results.items():
        extra = {
            "accuracy": est.value,
            "assess_size": assess if est is not Accuracy.TRUE else None,
        }
        for c in sorted(runs, key=lambda c: TABLE_ORDER.index(c.method)):
            rows.append(c.final.row(**extra))
            pick = np.unique(
                np.r_[np.arange(0, len(c.labels), args.curve_every), len(c.labels) - 1]
            )
            n = c.error.shape[0]
            curves.append(
                {
                    "cohort": c.cohort,
                    "method": c.method.value,
                    **extra,
                    "labels": c.labels[pick].tolist(),
                    "error": c.error.mean(axis=0)[pick].tolist(),
                    "error_se": _se(c.error)[pick].tolist() if n > 1 else None,
                    "mae": c.mae.mean(axis=0)[pick].tolist(),
                    "mae_se": _se(c.mae)[pick].tolist() if n > 1 else None,
                }
            )
    return json_safe(
        {
            "experiment": "uncertainty",
            "trials": args.trials,
            "seed": args.seed,
            "examples": args.examples,
            "budget": args.budget,
            "labelers": args.labelers,
            "tie_break": args.tie_break,
            "model": args.model,
            "rows": rows,
            "curves": curves,
        }
    )


def _se(values: np.ndarray) -> np.ndarray:
    out: np.ndarray = values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])
    return out


def format_uncertainty(doc: dict[str, Any], cohorts: Sequence[Cohort]) -> str:
    out = []
    estimators = list(dict.fromkeys(r["accuracy"] for r in doc["rows"]))
    for est in estimators:
        for cohort in cohorts:
            rows = [r for r in doc["rows"] if r["accuracy"] == est and r["cohort"] == cohort.name]
            out.append(
                f"{cohort.title}: {_trials(doc['trials'])}, {doc['examples']} examples, "
                f"B = {doc['budget']}, {_accuracy_text(rows[0], doc)}, ties: {doc['tie_break']}"
            )
            lines: list[tuple[str, ...]] = [("method", "error rate", "MAE")]
            for r in rows:
                lines.append(
                    (
                        r["method"].upper(),
                        _pct(r["error"], r["error_se"]),
                        _pct(r["mae"], r["mae_se"]),
                    )
                )
            out += _table(lines)
            out.append("")
    out.append("Final error rate and MAE over all examples; ± is the standard error over trials.")
    return "\n".join(out).rstrip()


# ---------------------------------------------------------------------------------------------
# figures


def plot(
    directory: str,
    experiment: str,
    results: Any,
    cohorts: Sequence[Cohort],
    model: str = ModelName.ONE_COIN.value,
) -> int:
    try:
        from gtx_stream.offline import figures
    except ImportError:
        print(
            "gtx-stream simulate: --plot needs matplotlib: pip install -e '.[plot]' in the "
            "gtx-stream folder",
            file=sys.stderr,
        )
        return 2
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    two_coin = "-two_coin" if model == ModelName.TWO_COIN.value else ""
    for est, data in results.items():
        suffix = ("" if est is Accuracy.TRUE else f"-{est.value}") + two_coin
        if experiment == "threshold":
            path = out / f"figure1{suffix}.png"
            figures.figure1(data, cohorts, path)
        else:
            path = out / f"figure2{suffix}.png"
            figures.figure2(data, cohorts, path)
        print(f"wrote {path}", file=sys.stderr)
    return 0
