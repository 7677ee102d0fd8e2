"""The fine-tuning experiment's results: summary, tests, JSON, and Figures 4 and 5 as PNG.

- ``finetune.json``: the plan, the split sizes, every training run (one row per cohort,
  method, budget, seed and repeat), the mean and standard error per cell, and per cohort the
  Friedman test on balanced error (blocks: seed x budget, each the mean over its training
  repeats; groups: methods) with Dunn's pairwise p-values, over all budgets and over the
  budgets up to 1000.
- ``finetune-figure4.png``: per cohort, training-set size, balanced error and ECE against
  the budget, one line per method (mean and standard error over seeds and repeats).
- ``finetune-figure5.png``: box plots of balanced error per method, one panel per cohort.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gtx_stream.core.stats import dunn, friedman
from gtx_stream.train.experiment import Result

JSON_FILE = "finetune.json"
FIGURE4 = "finetune-figure4.png"
FIGURE5 = "finetune-figure5.png"
SMALL_BUDGET = 1000
METRICS = ("n_train", "balanced_error", "ece", "label_error")


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    se = float(arr.std(ddof=1) / math.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), se


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard error of each metric per (cohort, method, budget)."""
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for row in rows:
        cells.setdefault((row["cohort"], row["method"], row["budget"]), []).append(row)
    out = []
    for (cohort, method, budget), group in cells.items():
        cell: dict[str, Any] = {"cohort": cohort, "method": method, "budget": budget,
                                "runs": len(group)}  # fmt: skip
        for metric in METRICS:
            cell[metric], cell[f"{metric}_se"] = _mean_se([g[metric] for g in group])
        out.append(cell)
    return out


def tests(rows: Sequence[dict[str, Any]], methods: Sequence[str], max_budget: int | None = None
          ) -> dict[str, Any]:  # fmt: skip
    """Friedman on balanced error across methods, then Dunn's pairwise test.

    A block is one seed at one budget: the labeled sets of all methods come from the same
    labelers and answers there. Its value per method is the mean over the training repeats,
    which share that labeled set and so are not independent blocks of their own.
    """
    table: dict[tuple[int, int], dict[str, list[float]]] = {}
    for row in rows:
        if max_budget is None or row["budget"] <= max_budget:
            cell = table.setdefault((row["seed"], row["budget"]), {})
            cell.setdefault(row["method"], []).append(row["balanced_error"])
    blocks = [{m: float(np.mean(v)) for m, v in b.items()} for b in table.values()
              if all(m in b for m in methods)]  # fmt: skip
    out: dict[str, Any] = {"blocks": len(blocks), "max_budget": max_budget}
    if len(blocks) < 2 or len(methods) < 3:
        out["skipped"] = "needs at least 2 blocks and 3 methods"
        return out
    values = np.array([[b[m] for m in methods] for b in blocks])
    if np.ptp(values) == 0:
        out["skipped"] = "every balanced error is the same"
        return out
    f = friedman(values)
    out["friedman"] = {"chi2": f.statistic, "p_value": f.p_value}
    out["dunn"] = [
        {"a": p.a, "b": p.b, "z": p.z, "p_value": p.p_value, "p_holm": p.p_holm}
        for p in dunn({m: values[:, i].tolist() for i, m in enumerate(methods)})
    ]
    out["median_balanced_error"] = {m: float(np.median(values[:, i]))
                                    for i, m in enumerate(methods)}  # fmt: skip
    return out


def document(result: Result) -> dict[str, Any]:
    plan = result.plan
    methods = [m.value for m in plan.methods]
    by_cohort = {}
    for cohort in plan.cohorts:
        rows = [r for r in result.rows if r["cohort"] == cohort.name]
        by_cohort[cohort.name] = {
            "all_budgets": tests(rows, methods),
            f"budgets_up_to_{SMALL_BUDGET}": tests(rows, methods, SMALL_BUDGET),
        }
    return {
        "plan": plan.describe(),
        "split": {
            "pool": int(result.split.pool.size),
            "assessment": int(result.split.assess.size),
            "heldout": int(result.split.heldout.size),
        },
        "seconds": result.seconds,
        "summary": summary(result.rows),
        "tests": by_cohort,
        "runs": result.rows,
    }


def write(out: Path, result: Result) -> list[Path]:
    """``finetune.json`` and, with matplotlib, the two figures; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    doc = document(result)
    path = out / JSON_FILE
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    written = [path]
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return written
    written += [figure4(out / FIGURE4, doc), figure5(out / FIGURE5, doc)]
    return written


_COLOURS = {"mv": "#8c8c8c", "wmv": "#4c72b0", "sv": "#dd8452", "gtx": "#c44e52"}
_NAMES = {"n_train": "training images (N)", "balanced_error": "balanced error",
          "ece": "ECE (10 bins)"}  # fmt: skip


def _title(cohort: dict[str, Any]) -> str:
    return f"alpha ~ U({cohort['low']:g}, {cohort['high']:g})"


def figure4(path: Path, doc: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    plan = doc["plan"]
    cohorts = plan["cohorts"]
    fig, axes = plt.subplots(len(cohorts), 3, figsize=(13, 3.6 * len(cohorts)), squeeze=False)
    for row, cohort in enumerate(cohorts):
        cells = [c for c in doc["summary"] if c["cohort"] == cohort["name"]]
        for col, metric in enumerate(("n_train", "balanced_error", "ece")):
            ax = axes[row][col]
            for method in plan["methods"]:
                mine = sorted((c for c in cells if c["method"] == method),
                              key=lambda c: c["budget"])  # fmt: skip
                x = [c["budget"] for c in mine]
                y = np.array([c[metric] for c in mine])
                se = np.array([c[f"{metric}_se"] for c in mine])
                # MV and WMV often agree on every image (5 votes): MV dashed, drawn on top
                style = dict(ls="--", lw=2.2, zorder=3) if method == "mv" else dict(lw=1.5)
                ax.plot(x, y, marker="o", ms=3, color=_COLOURS.get(method), label=method.upper(),
                        **style)  # fmt: skip
                ax.fill_between(x, y - se, y + se, color=_COLOURS.get(method), alpha=0.15)
            ax.set_xscale("log")
            ax.set_xticks(plan["budgets"], [str(b) for b in plan["budgets"]], rotation=45)
            ax.minorticks_off()
            ax.set_xlabel("labeling budget (labels)")
            ax.set_ylabel(_NAMES[metric])
            ax.set_title(f"{_title(cohort)}: {_NAMES[metric]}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[row][0].legend(fontsize=8)
    runs = f"{_count(plan['seeds'], 'seed')} x {_count(plan['repeats'], 'training')}"
    title = f"Fine-tuning on the stand-in ({plan['mode']} mode): mean and standard error, {runs}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def figure5(path: Path, doc: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    plan = doc["plan"]
    cohorts = plan["cohorts"]
    fig, axes = plt.subplots(1, len(cohorts), figsize=(5.2 * len(cohorts), 4), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts, strict=True):
        mine = [r for r in doc["runs"] if r["cohort"] == cohort["name"]]
        data = [[r["balanced_error"] for r in mine if r["method"] == m] for m in plan["methods"]]
        box = ax.boxplot(data, patch_artist=True)
        ax.set_xticks(range(1, len(data) + 1), [m.upper() for m in plan["methods"]])
        for patch, method in zip(box["boxes"], plan["methods"], strict=True):
            patch.set_facecolor(_COLOURS.get(method, "white"))
            patch.set_alpha(0.6)
        test = doc["tests"][cohort["name"]]["all_budgets"]
        note = (f"Friedman p = {test['friedman']['p_value']:.2g}" if "friedman" in test
                else test.get("skipped", ""))  # fmt: skip
        ax.set_title(f"{_title(cohort)}\n{note}", fontsize=10)
        ax.set_ylabel("balanced error on held-out frames")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"All budgets {plan['budgets'][0]} to {plan['budgets'][-1]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def format_text(doc: dict[str, Any]) -> str:
    """What the command prints: per cohort and budget, N and balanced error per method."""
    plan = doc["plan"]
    lines = []
    for cohort in plan["cohorts"]:
        lines.append(f"{_title(cohort)}  (N / balanced error / ECE, mean over runs)")
        lines.append("budget  " + "  ".join(f"{m.upper():>19}" for m in plan["methods"]))
        cells = {(c["method"], c["budget"]): c for c in doc["summary"]
                 if c["cohort"] == cohort["name"]}  # fmt: skip
        for b in plan["budgets"]:
            parts = [f"{cells[m, b]['n_train']:4.0f} {cells[m, b]['balanced_error']:6.3f} "
                     f"{cells[m, b]['ece']:6.3f}" for m in plan["methods"]]  # fmt: skip
            lines.append(f"{b:6d}  " + "  ".join(f"{p:>19}" for p in parts))
        for scope, test in doc["tests"][cohort["name"]].items():
            if "friedman" not in test:
                lines.append(f"  {scope}: {test.get('skipped')}")
                continue
            pairs = ", ".join(f"{d['a']}-{d['b']} {d['p_value']:.2g}" for d in test["dunn"])
            lines.append(f"  {scope}: Friedman chi2 {test['friedman']['chi2']:.1f}, "
                         f"p {test['friedman']['p_value']:.2g}; Dunn p: {pairs}")  # fmt: skip
        lines.append("")
    s = doc["seconds"]
    lines.append(f"time: {s['total']:.0f} s (collection {s['collect']:.1f} s, features "
                 f"{s['features']:.0f} s, training {s['train']:.0f} s)")  # fmt: skip
    return "\n".join(lines)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
