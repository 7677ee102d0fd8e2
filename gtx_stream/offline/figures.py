"""Figures 1 and 2 of the paper from simulator results (needs matplotlib: the ``plot`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from gtx_stream.offline.simulate import TABLE_ORDER, Cohort, Curves, Outcome  # noqa: E402

COLORS = {"mv": "tab:blue", "wmv": "tab:orange", "sv": "tab:green", "gtx": "tab:red"}


def figure1(outcomes: Sequence[Outcome], cohorts: Sequence[Cohort], path: Path) -> None:
    """Error rate against labels per example: every trial (dots) and the mean per setting."""
    fig, axes = plt.subplots(1, len(cohorts), figsize=(6 * len(cohorts), 4.5), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts, strict=True):
        for method in TABLE_ORDER:
            mine = [o for o in outcomes if o.cohort == cohort.name and o.method is method]
            if not mine:
                continue
            color = COLORS[method.value]
            for o in mine:
                ax.scatter(o.avg_k, 100 * o.error, s=4, alpha=0.15, color=color, linewidths=0)
            mean_k = [float(o.labels_used.sum() / o.n_labeled.sum()) for o in mine]
            mean_err = [100 * float(o.error.mean()) for o in mine]
            order = np.argsort(mean_k)
            ax.plot(
                np.asarray(mean_k)[order],
                np.asarray(mean_err)[order],
                marker="o",
                ms=3,
                color=color,
                label=method.value.upper(),
            )
        ax.set_yscale("log")
        ax.set_xlabel("labels per example (k = B / N)")
        ax.set_ylabel("error rate (%)")
        ax.set_title(cohort.title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Figure 1: confidence threshold (GTX, SV: tau sweep; MV, WMV: k = 1..kappa)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def figure2(curves: Sequence[Curves], cohorts: Sequence[Cohort], path: Path) -> None:
    """Error rate and MAE over the whole dataset as labels are collected: mean ± standard error."""
    fig, axes = plt.subplots(len(cohorts), 2, figsize=(12, 4.2 * len(cohorts)), squeeze=False)
    for row, cohort in zip(axes, cohorts, strict=True):
        for method in TABLE_ORDER:
            for c in curves:
                if c.cohort != cohort.name or c.method is not method:
                    continue
                n = c.error.shape[0]
                for ax, values in zip(row, (c.error, c.mae), strict=True):
                    mean = 100 * values.mean(axis=0)
                    ax.plot(c.labels, mean, color=COLORS[method.value], label=method.value.upper())
                    if n > 1:
                        se = 100 * values.std(axis=0, ddof=1) / np.sqrt(n)
                        ax.fill_between(
                            c.labels, mean - se, mean + se, color=COLORS[method.value], alpha=0.2
                        )
        for ax, name in zip(row, ("error rate (%)", "MAE (%)"), strict=True):
            ax.set_yscale("log")
            ax.set_xlabel("labels collected")
            ax.set_ylabel(name)
            ax.set_title(cohort.title, fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
    fig.suptitle("Figure 2: uncertainty sampling (mean ± standard error over trials)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
