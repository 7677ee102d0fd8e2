"""``gtx-stream estimator --once`` and ``gtx-stream labelers list`` on what the estimator wrote,
against a real Redis; the labelers table's columns."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.cli.labelers import labeler_table
from gtx_stream.core.records import FinalRecord
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, store

TRUE = {"good": 0.92, "fair": 0.8}


def _pipeline(r: redis.Redis, keys: Keys, redis_url: str, tmp_path: Path) -> str:
    """Two labelers with gold records and 60 final frames labeled by both; the config path."""
    store(r, keys, {lid: LabelerAccuracy((17 + 1) / (20 + 2), 0.6, 0.95, "assessment", 20,
                                         correct=17) for lid in TRUE})  # fmt: skip
    rng = np.random.default_rng(3)
    for i in range(60):
        y = int(rng.integers(0, 2))
        labels = [y if rng.random() < TRUE[lid] else 1 - y for lid in TRUE]
        rec = FinalRecord(frame_id=f"f{i}", label=labels[0], p1=0.5, confidence=0.5,
                          reason="kappa", method="gtx", labelers=list(TRUE), labels=labels,
                          accuracies=[0.5] * len(labels), finalised_at=time.time())  # fmt: skip
        r.xadd(keys.final, rec.to_fields())  # type: ignore[arg-type]
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "{keys.prefix}"\n'
                   "[estimator]\nmin_labels = 10\n")  # fmt: skip
    return str(cfg)


@pytest.fixture
def no_gtx_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(os.environ):
        if k.startswith("GTX_"):
            monkeypatch.delenv(k)


@pytest.mark.redis
@pytest.mark.usefixtures("no_gtx_env")
def test_labelers_list_json_shows_em_records_as_stored(
    r: redis.Redis, keys: Keys, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _pipeline(r, keys, redis_url, tmp_path)
    assert main(["estimator", "--config", cfg, "--once"]) == 0
    capsys.readouterr()
    assert main(["labelers", "--config", cfg, "list", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    stored = {lid: json.loads(raw) for lid, raw in r.hgetall(keys.labelers).items()}
    assert shown == stored
    # what an em record rests on: its gold base, when it was fitted, its labels in the fit
    assert shown["good"]["base"]["source"] == "assessment"
    assert shown["good"]["labels"] == 60 and "fitted_at" in shown["good"]


@pytest.mark.redis
@pytest.mark.usefixtures("no_gtx_env")
def test_estimator_once_prints_the_parameters_it_wrote(
    r: redis.Redis, keys: Keys, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _pipeline(r, keys, redis_url, tmp_path)
    assert main(["estimator", "--config", cfg, "--once"]) == 0
    out = capsys.readouterr().out
    stored = {lid: json.loads(raw) for lid, raw in r.hgetall(keys.labelers).items()}
    assert "wrote good, fair" in out or "wrote fair, good" in out
    for lid, rec in stored.items():
        row = next(line for line in out.splitlines() if line.startswith(lid + " "))
        assert f"{rec['accuracy']:.4f}" in row and row.split()[-1] == "em"


def _columns(out: str) -> list[dict[str, str]]:
    """The rows of a labelers table by column name (one-word names, and the interval)."""
    head, *rows = out.strip().splitlines()
    names = head.replace("95% interval", "interval").replace("fit labels", "fit_labels").split()
    return [dict(zip(names, row.replace(", ", ",").split(), strict=True)) for row in rows]


@pytest.mark.redis
@pytest.mark.usefixtures("no_gtx_env")
def test_labelers_list_says_gold_answers_and_labels_in_the_fit(
    r: redis.Redis, keys: Keys, redis_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = _pipeline(r, keys, redis_url, tmp_path)
    assert main(["estimator", "--config", cfg, "--once"]) == 0
    printed = capsys.readouterr().out.split("\n", 1)[1]  # the table under the summary line
    store(r, keys, {"other": LabelerAccuracy.given(0.7, "file")})
    assert main(["labelers", "--config", cfg, "list"]) == 0
    rows = {row["labeler"]: row for row in _columns(capsys.readouterr().out)}
    # an em record: the 20 gold answers of its base, and its 60 labels in the fit (the
    # column said n = 20 before, which read as the labels it was fitted on)
    assert rows["good"]["gold"] == "20" and rows["good"]["fit_labels"] == "60"
    assert rows["good"]["source"] == "em"
    assert rows["other"]["gold"] == "0" and rows["other"]["fit_labels"] == "-"
    once = {row["labeler"]: row for row in _columns(printed)}
    assert once["fair"]["fit_labels"] == "60" and once["fair"]["gold"] == "20"


def test_the_labelers_table_without_em_records_has_no_fit_column() -> None:
    bob = LabelerAccuracy(0.81, 0.6, 0.9, "assessment", 20, correct=17)
    out = labeler_table({"alice": LabelerAccuracy.given(0.92, "file"), "bob": bob})
    head = out.splitlines()[0]
    assert head.split() == ["labeler", "accuracy", "95%", "interval", "gold", "source"]
    rows = {row["labeler"]: row for row in _columns(out)}
    assert rows["bob"]["gold"] == "20" and rows["alice"]["gold"] == "0"
    # each value ends under its column's name
    line = out.splitlines()[2]
    assert line.index("20") + 2 == head.index("gold") + 4


@pytest.mark.usefixtures("no_gtx_env")
def test_min_labels_above_the_window_is_refused_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The window never holds more than window_labels labels, so such an estimator waited for
    ever without a word; now one line, before Redis is even asked."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[redis]\nurl = "redis://127.0.0.1:1/0"\n'
                   "[estimator]\nmin_labels = 50\nwindow_labels = 40\n")  # fmt: skip
    for once in ([], ["--once"]):
        assert main(["estimator", "--config", str(cfg), *once]) == 2
        assert capsys.readouterr().err == (
            "config error: estimator.min_labels = 50 is above estimator.window_labels = 40: "
            "no fit would ever run\n"
        )
