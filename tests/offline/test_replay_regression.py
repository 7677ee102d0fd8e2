"""The gold-only one-coin replay keeps today's figures (issue 11: a regression check).

Pinned from ``gtx-stream replay DATASET --json`` (10 trials, seed 0, tau 0.99, kappa 5, beta)
before ``--model`` and ``--estimate`` existed: labels per task, accuracy and MAE of each row.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.core.datasets import load_dataset
from gtx_stream.offline.replay import replay

PINNED = {
    "rte": {
        "gtx": (4.894306, 0.864028, 0.195749),
        "sv": (5.0, 0.862778, 0.401641),
        "mv": (5.0, 0.847778, 0.271583),
        "wmv": (5.0, 0.862639, 0.248703),
        "mv-all": (10.0, 0.875417, 0.270583),
    },
    "temp": {
        "gtx": (4.547115, 0.910817, 0.118168),
        "sv": (5.0, 0.909615, 0.353595),
        "mv": (5.0, 0.886779, 0.270192),
        "wmv": (5.0, 0.90601, 0.22679),
        "mv-all": (10.0, 0.931971, 0.266899),
    },
    "bluebirds": {
        "gtx": (4.906186, 0.765979, 0.286394),
        "sv": (5.0, 0.770103, 0.43199),
        "mv": (5.0, 0.726804, 0.358557),
        "wmv": (5.0, 0.750515, 0.331581),
        "mv-all": (39.0, 0.764948, 0.362834),
    },
    "possent": {
        "gtx": (4.8587, 0.8908, 0.161109),
        "sv": (5.0, 0.8881, 0.383545),
        "mv": (5.0, 0.8178, 0.3112),
        "wmv": (5.0, 0.8694, 0.262788),
        "mv-all": (20.0, 0.935, 0.31355),
    },
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_gold_one_coin_replay_keeps_todays_figures(datasets: Path, name: str) -> None:
    report = replay(load_dataset(datasets / name), trials=10, seed=0)
    got = {row.method: (row.avg_k, row.accuracy, row.mae) for row in report.rows}
    assert set(got) == set(PINNED[name])
    for method, pinned in PINNED[name].items():
        assert got[method] == pytest.approx(pinned, abs=1e-6), method


def _docs_row(dataset: str, tau: str) -> list[str]:
    """docs/replay.md's "Against the threshold" row of ``dataset`` at ``tau``, cell by cell."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "replay.md"
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [dataset, tau] and len(cells) == 8:
            return cells
    raise AssertionError(f"no row for {dataset} at tau {tau} in docs/replay.md")


@pytest.mark.parametrize("name", ["rte", "temp"])
def test_docs_threshold_rows_at_tau_09_are_what_the_replay_prints(
    datasets: Path, name: str
) -> None:
    """Tau 0.9 sits on exact ties (docs/replay.md): the row must be what the command gives."""
    cells = _docs_row(name, "0.9")
    report = replay(load_dataset(datasets / name), trials=10, seed=0, kappa=10, tau=0.9)
    gtx = next(row for row in report.rows if row.method == "gtx")
    assert cells[2] == f"{gtx.avg_k:.2f}"
    assert cells[3] == f"{gtx.accuracy:.4f} ± {gtx.accuracy_se:.4f}"
    assert cells[5].split(" / ")[0] == f"{gtx.mae:.4f}"
    assert cells[4].endswith(f"({round(gtx.avg_k * gtx.n_tasks)})")  # N for the uncertainty run
