"""Labeler parameters from files: an accuracy file (TOML or CSV) and an assessment set.

An accuracy file gives ``id`` and ``accuracy`` per labeler, with optional ``lower``, ``upper``,
``n`` (gold items), ``correct`` (of them right) and the two coins ``sensitivity`` and
``specificity`` (each with optional ``*_lower`` and ``*_upper``; ``positives`` and
``negatives``: the gold items of class 1 and of class 0 they rest on). An assessment set is the
answers ``task,worker,label`` and truth ``task,truth`` that equation (4) measures accuracies on.
"""

from __future__ import annotations

import csv
import math
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gtx_stream.config.labelers import LABELER_ID_PATTERN
from gtx_stream.core import accuracy
from gtx_stream.core.accuracy import Estimator
from gtx_stream.core.datasets import DatasetError, read_answers, read_truth
from gtx_stream.store.params import LabelerAccuracy, RegistryError, TwoCoinRecord

COIN_COLUMNS = ("sensitivity", "specificity")
COLUMNS = ("id", "accuracy", "lower", "upper", "n", "correct", *COIN_COLUMNS,
           "sensitivity_lower", "sensitivity_upper", "specificity_lower", "specificity_upper",
           "positives", "negatives")  # fmt: skip
"""What an accuracy file may give per labeler; anything else (a typo: ``acuracy``) is refused."""
COUNTS = ("n", "correct", "positives", "negatives")


def _unknown(names: Any, where: str, what: str) -> None:
    extra = [str(name) for name in names if name not in COLUMNS]
    if extra:
        listed = ", ".join(map(repr, extra))
        plural = "s" * (len(extra) > 1)
        raise RegistryError(
            f"{where}: unknown {what}{plural} {listed} (known: {', '.join(COLUMNS)})"
        )


def _number(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RegistryError(f"{what}: not a number: {value!r}") from None
    if math.isnan(out):
        raise RegistryError(f"{what}: not a number: {value!r}")
    return out


def _record(row: Mapping[str, Any], where: str) -> tuple[str, LabelerAccuracy]:
    lid = str(row.get("id") or "").strip()
    if not lid:
        raise RegistryError(f"{where}: missing labeler id")
    if not re.match(LABELER_ID_PATTERN, lid):
        raise RegistryError(f"{where}: labeler id {lid!r} is not made of letters, digits "
                            "and _ . : @ - (as the config's ids)")  # fmt: skip
    if row.get("accuracy") in (None, ""):
        raise RegistryError(f"{where}: labeler {lid}: missing accuracy")
    acc = _number(row["accuracy"], f"{where}: labeler {lid}: accuracy")

    def get(name: str, default: float | None) -> float | None:
        value = row.get(name)
        if value in (None, ""):
            return default
        out = _number(value, f"{where}: labeler {lid}: {name}")
        if name in COUNTS and not out.is_integer():  # int() would cut 2.5 to 2
            raise RegistryError(f"{where}: labeler {lid}: {name}: not a whole number: {value!r}")
        return out

    n = get("n", 0.0)
    correct = get("correct", None)
    rec = LabelerAccuracy(
        accuracy=acc,
        lower=get("lower", acc) or 0.0,
        upper=get("upper", acc) or 0.0,
        source="file",
        n=int(n or 0),
        two_coin=_coins(row, where, lid, get),
        correct=None if correct is None else int(correct),
    )
    try:
        return lid, rec.check(lid)
    except RegistryError as err:
        raise RegistryError(f"{where}: {err}") from None


def _coins(row: Mapping[str, Any], where: str, lid: str, get: Any) -> TwoCoinRecord | None:
    """The row's two coins, when it gives both (one without the other is an error)."""
    given = [c for c in COIN_COLUMNS if row.get(c) not in (None, "")]
    if not given:
        return None
    if len(given) == 1:
        raise RegistryError(f"{where}: labeler {lid}: {given[0]} without its other coin")
    s = _number(row["sensitivity"], f"{where}: labeler {lid}: sensitivity")
    t = _number(row["specificity"], f"{where}: labeler {lid}: specificity")
    return TwoCoinRecord(
        s, t, get("sensitivity_lower", s), get("sensitivity_upper", s),
        get("specificity_lower", t), get("specificity_upper", t), "file",
        int(get("positives", 0.0)), int(get("negatives", 0.0)),
    )  # fmt: skip


def load_file(path: str | Path) -> dict[str, LabelerAccuracy]:
    """Accuracies from TOML (``[[labelers]]`` tables) or CSV (header ``id,accuracy``).

    The optional columns of the module docstring are read too. Every value is checked before
    anything is returned, so a bad line stores nothing.
    """
    file = Path(path)
    if not file.is_file():
        raise RegistryError(f"{file}: no such file")
    suffix = file.suffix.lower()
    rows: list[tuple[str, Mapping[str, Any]]] = []
    if suffix == ".toml":
        try:
            doc = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as err:
            raise RegistryError(f"{file}: {err}") from None
        tables = doc.get("labelers")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise RegistryError(f"{file}: expected [[labelers]] tables with id and accuracy")
        others = [key for key in doc if key != "labelers"]
        if others:
            raise RegistryError(f"{file}: only [[labelers]] tables belong in an accuracy file, "
                                f"not {', '.join(map(repr, others))}")  # fmt: skip
        rows = [(f"{file}: labelers[{i}]", t) for i, t in enumerate(tables)]
        for where, table in rows:
            _unknown(table, where, "key")
    elif suffix == ".csv":
        with file.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"id", "accuracy"} - set(reader.fieldnames or ())
            if missing:
                raise RegistryError(f"{file}: missing column(s) {sorted(missing)}")
            _unknown(reader.fieldnames or (), str(file), "column")
            header = len(reader.fieldnames or ())
            for line in reader:
                where = f"{file}: line {reader.line_num}"
                if None in line:  # DictReader's key for the fields past the header's
                    n = header + len(line[None])
                    raise RegistryError(f"{where}: {n} fields, the header has {header}")
                rows.append((where, line))
    else:
        raise RegistryError(f"{file}: expected a .toml or .csv file")
    if not rows:
        raise RegistryError(f"{file}: no labeler in it")
    out: dict[str, LabelerAccuracy] = {}
    for where, row in rows:
        lid, rec = _record(row, where)
        if lid in out:
            raise RegistryError(f"{where}: labeler {lid} appears twice")
        out[lid] = rec
    return out


def assess(
    answers_path: str | Path,
    truth_path: str | Path,
    estimator: Estimator | str = Estimator.BETA,
    two_coin: bool = False,
) -> dict[str, LabelerAccuracy]:
    """Accuracies from an assessment set: answers ``task,worker,label`` and truth ``task,truth``.

    ``beta`` (default): the Beta(1, 1) posterior mean with its 95% credible interval;
    ``mle``: equation (4) with the exact (Clopper-Pearson) 95% interval. Answers to tasks
    without a truth are not counted. The files are read by :mod:`gtx_stream.core.datasets`,
    the estimate is :func:`gtx_stream.core.accuracy.assess`; with ``two_coin`` each record
    also holds the sensitivity and specificity from the same answers
    (:func:`gtx_stream.core.accuracy.assess_two_coin`, the same estimator and level).
    """
    estimator = Estimator(estimator)
    if estimator is Estimator.TRUE:
        raise RegistryError("the true accuracy is not an estimate; use beta or mle")
    try:
        truth = read_truth(truth_path)
        answers = read_answers(answers_path)
    except DatasetError as err:
        raise RegistryError(str(err)) from None
    estimates = accuracy.assess(answers, truth, estimator)
    if not estimates:
        raise RegistryError(f"{answers_path}: no answer to a task of {truth_path}")
    coins = (
        accuracy.assess_two_coin(answers, truth, estimator, labelers=estimates) if two_coin else {}
    )
    return {
        lid: LabelerAccuracy(e.accuracy, e.lower, e.upper, "assessment", e.total,
                             TwoCoinRecord.measured(coins[lid], "assessment") if coins else None,
                             e.correct)
        for lid, e in estimates.items()
    }  # fmt: skip
