"""Labeler accuracies: files, assessment sets, Redis, and the ``labelers`` command."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.config import Settings
from gtx_stream.core.accuracy import beta_accuracy, count_correct
from gtx_stream.core.models import TwoCoin
from gtx_stream.store.keys import Keys
from gtx_stream.store.param_files import assess, load_file
from gtx_stream.store.params import (
    LabelerAccuracy,
    RegistryError,
    TwoCoinRecord,
    get_accuracies,
    get_labelers,
    register_configured,
    store,
)

# --- files ------------------------------------------------------------------------------------


def test_load_toml_and_csv(tmp_path: Path) -> None:
    toml = tmp_path / "acc.toml"
    toml.write_text(
        '[[labelers]]\nid = "a"\naccuracy = 0.9\n\n'
        '[[labelers]]\nid = "b"\naccuracy = 0.75\nlower = 0.6\nupper = 0.85\nn = 40\n'
    )
    got = load_file(toml)
    assert got == {
        "a": LabelerAccuracy(0.9, 0.9, 0.9, "file", 0),
        "b": LabelerAccuracy(0.75, 0.6, 0.85, "file", 40),
    }
    table = tmp_path / "acc.csv"
    table.write_text("id,accuracy\na,0.9\nc,1\n")
    assert load_file(table) == {
        "a": LabelerAccuracy.given(0.9, "file"),
        "c": LabelerAccuracy.given(1.0, "file"),
    }


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("acc.csv", "id,accuracy\na,0.9\nb,1.2\n", "line 3: labeler b: accuracy must be in"),
        ("acc.csv", "id,accuracy\na,-0.1\n", "labeler a: accuracy must be in"),
        ("acc.csv", "id,accuracy\na,nan\n", "labeler a: accuracy: not a number"),
        ("acc.csv", "id,accuracy\na,high\n", "labeler a: accuracy: not a number"),
        ("acc.csv", "id,accuracy\na,\n", "labeler a: missing accuracy"),
        ("acc.csv", "id,acc\na,0.9\n", r"missing column\(s\) \['accuracy'\]"),
        ("acc.csv", "id,accuracy\na,0.9\na,0.8\n", "labeler a appears twice"),
        ("acc.csv", "id,accuracy\nalice,0.9,3\n", "line 2: 3 fields, the header has 2"),
        ("acc.csv", "id,accuracy\n", "acc.csv: no labeler in it"),
        ("acc.toml", "labelers = []\n", "acc.toml: no labeler in it"),
        ("acc.toml", '[[labelers]]\nid = "a"\naccuracy = 1.5\n', "accuracy must be in"),
        ("acc.toml", '[[labelers]]\nid = "a"\naccuracy = 0.8\nlower = 0.9\n', "lower <= acc"),
        ("acc.toml", "labelers = 3\n", r"expected \[\[labelers\]\]"),
        ("acc.toml", "[[labelers]\n", "acc.toml"),
        ("acc.json", "{}", "expected a .toml or .csv"),
        # each of these was stored (or ignored) without a word
        ("acc.toml", '[[labelers]]\nid = "a"\naccuracy = 0.8\nacuracy = 0.9\n',
         r"labelers\[0\]: unknown key 'acuracy' \(known: id, accuracy, lower,"),
        ("acc.toml", '[redis]\nurl = ""\n[[labelers]]\nid = "a"\naccuracy = 0.8\n',
         "only \\[\\[labelers\\]\\] tables belong in an accuracy file, not 'redis'"),
        ("acc.csv", "id,accuracy,lowr,src\na,0.9,0.8,x\n", "unknown columns 'lowr', 'src'"),
        ("acc.csv", "id,accuracy\nmy guy,0.9\n", "labeler id 'my guy' is not made of letters"),
        ("acc.csv", "id,accuracy,n\na,0.9,2.5\n", "labeler a: n: not a whole number: '2.5'"),
    ],
)  # fmt: skip
def test_bad_files_are_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(RegistryError, match=message):
        load_file(path)


# --- assessment -------------------------------------------------------------------------------


@pytest.fixture
def gold(tmp_path: Path) -> tuple[Path, Path]:
    answers = tmp_path / "answers.csv"
    truth = tmp_path / "truth.csv"
    truth.write_text("task,truth\n1,1\n2,0\n3,1\n4,0\n")
    # w1: 3 of 4 right; w2: 2 of 2 right; answers to task 9 (no truth) are not counted
    answers.write_text(
        "task,worker,label\n1,w1,1\n2,w1,0\n3,w1,0\n4,w1,0\n1,w2,1\n2,w2,0\n9,w2,1\n9,w1,0\n"
    )
    return answers, truth


def test_assess_beta_default(gold: tuple[Path, Path]) -> None:
    got = assess(*gold)
    assert got["w1"].accuracy == pytest.approx(4 / 6)  # (3 + 1) / (4 + 2)
    assert got["w2"].accuracy == pytest.approx(3 / 4)  # (2 + 1) / (2 + 2)
    assert (got["w1"].n, got["w2"].n) == (4, 2)
    est = beta_accuracy([3, 2], [4, 2])
    assert got["w1"].lower == pytest.approx(est.lower[0])
    assert got["w2"].upper == pytest.approx(est.upper[1])
    assert all(rec.source == "assessment" for rec in got.values())


def test_assess_mle(gold: tuple[Path, Path]) -> None:
    got = assess(*gold, estimator="mle")
    assert got["w1"].accuracy == 0.75
    assert got["w2"].accuracy == 1.0
    assert got["w2"].upper == 1.0 and 0.0 < got["w2"].lower < 1.0
    assert got["w1"].lower < 0.75 < got["w1"].upper


def test_assess_two_coin_per_class(gold: tuple[Path, Path]) -> None:
    got = assess(*gold, two_coin=True)
    # w1: 1 of 2 class-1 items right, 2 of 2 class-0 items; w2: 1 of 1 and 1 of 1 (Beta(1, 1))
    w1, w2 = got["w1"].two_coin, got["w2"].two_coin
    assert w1 is not None and w2 is not None
    assert (w1.sensitivity, w1.specificity) == (pytest.approx(2 / 4), pytest.approx(3 / 4))
    assert (w1.positives, w1.negatives) == (2, 2)
    assert (w2.sensitivity, w2.specificity) == (pytest.approx(2 / 3), pytest.approx(2 / 3))
    est = beta_accuracy([1, 2], [2, 2])
    assert (w1.sensitivity_lower, w1.specificity_upper) == (
        pytest.approx(est.lower[0]), pytest.approx(est.upper[1])
    )  # fmt: skip
    assert w1.source == "assessment"
    # the one-coin part is what assess gives without two_coin
    assert {k: dataclasses.replace(v, two_coin=None) for k, v in got.items()} == assess(*gold)
    assert all(rec.two_coin is None for rec in assess(*gold).values())


def test_assess_refuses_bad_input(tmp_path: Path, gold: tuple[Path, Path]) -> None:
    answers, truth = gold
    bad = tmp_path / "bad.csv"
    bad.write_text("task,worker,label\n1,w1,2\n")
    with pytest.raises(RegistryError, match="label must be 0 or 1"):
        assess(bad, truth)
    with pytest.raises(RegistryError, match="no such file"):
        assess(tmp_path / "missing.csv", truth)
    other = tmp_path / "other_truth.csv"
    other.write_text("task,truth\n100,1\n")
    with pytest.raises(RegistryError, match="no answer to a task"):
        assess(answers, other)
    with pytest.raises(RegistryError, match="not an estimate"):
        assess(answers, truth, estimator="true")


def test_assess_possent(datasets: Path) -> None:
    folder = datasets / "possent"
    got = assess(folder / "assessment_answers.csv", folder / "assessment_truth.csv")
    with (folder / "assessment_truth.csv").open(newline="") as fh:
        truth = {r["task"]: int(r["truth"]) for r in csv.DictReader(fh)}
    with (folder / "assessment_answers.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["task"] in truth]
    counts = count_correct(
        [r["worker"] for r in rows],
        [int(r["label"]) for r in rows],
        [truth[r["task"]] for r in rows],
    )
    assert set(got) == set(counts)
    for lid, (c, n) in counts.items():
        assert got[lid].n == n
        assert got[lid].accuracy == pytest.approx((c + 1) / (n + 2))
        assert got[lid].lower <= got[lid].accuracy <= got[lid].upper


# --- Redis ------------------------------------------------------------------------------------


def test_store_and_read_back(r: redis.Redis, keys: Keys) -> None:
    recs = {
        "a": LabelerAccuracy(0.8, 0.7, 0.9, "assessment", 50),
        "b": LabelerAccuracy.given(0.6, "file"),
    }
    assert store(r, keys, recs) == 2
    assert get_labelers(r, keys) == recs
    assert get_accuracies(r, keys) == {"a": 0.8, "b": 0.6}
    assert json.loads(r.hget(keys.labelers, "a") or "") == {
        "accuracy": 0.8,
        "lower": 0.7,
        "upper": 0.9,
        "source": "assessment",
        "n": 50,
    }
    # a bytes client reads the same
    raw = redis.Redis(
        connection_pool=redis.ConnectionPool(
            **{**r.get_connection_kwargs(), "decode_responses": False}
        )
    )
    assert get_accuracies(raw, keys) == {"a": 0.8, "b": 0.6}


def test_two_coin_parameters_survive_redis_and_default_to_the_accuracy(
    r: redis.Redis, keys: Keys
) -> None:
    coins = TwoCoinRecord(0.9, 0.7, 0.8, 0.95, 0.6, 0.8, "assessment", 12, 30)
    recs = {
        "a": LabelerAccuracy(0.8, 0.7, 0.9, "assessment", 42, coins),
        "b": LabelerAccuracy.given(0.6, "file"),
    }
    store(r, keys, recs)
    assert get_labelers(r, keys) == recs
    stored = json.loads(r.hget(keys.labelers, "a") or "")
    assert stored["two_coin"]["sensitivity_upper"] == 0.95
    assert stored["two_coin"]["negatives"] == 30
    assert "two_coin" not in json.loads(r.hget(keys.labelers, "b") or "")
    assert recs["a"].two_coin_params() == TwoCoin(0.9, 0.7)
    assert recs["b"].two_coin_params() == TwoCoin(0.6, 0.6)  # no coins: its accuracy for both
    # given coins have a point interval; a stored record with coins but no intervals reads so
    assert TwoCoinRecord.given(0.9, 0.7, "config") == TwoCoinRecord(
        0.9, 0.7, 0.9, 0.9, 0.7, 0.7, "config"
    )
    r.hset(keys.labelers, "c", json.dumps({"accuracy": 0.7, "two_coin": {
        "sensitivity": 0.9, "specificity": 0.5, "source": "file"}}))  # fmt: skip
    assert get_labelers(r, keys)["c"].two_coin == TwoCoinRecord.given(0.9, 0.5, "file")


@pytest.mark.parametrize(
    ("coins", "message"),
    [
        (TwoCoinRecord.given(1.2, 0.7, "config"), "sensitivity must be in"),
        (TwoCoinRecord(0.9, 0.7, 0.95, 0.99, 0.7, 0.7, "config"), "need sensitivity_lower <="),
        (TwoCoinRecord(0.9, 0.7, 0.9, 0.9, 0.6, 0.65, "config"), "need specificity_lower <="),
        (TwoCoinRecord.given(0.9, 0.7, "guess"), "two-coin source must be one of"),
        (TwoCoinRecord(0.9, 0.7, 0.9, 0.9, 0.7, 0.7, "gold", -1, 0), "positives and negatives"),
    ],
    ids=["sensitivity-1.2", "sensitivity-outside-interval", "specificity-outside-interval",
         "bad-source", "negative-count"],
)  # fmt: skip
def test_bad_two_coin_parameters_store_nothing(
    r: redis.Redis, keys: Keys, coins: TwoCoinRecord, message: str
) -> None:
    recs = {"a": LabelerAccuracy.given(0.8, "file"),
            "b": LabelerAccuracy(0.8, 0.8, 0.8, "config", 0, coins)}  # fmt: skip
    with pytest.raises(RegistryError, match=f"labeler b: {message}"):
        store(r, keys, recs)
    assert r.exists(keys.labelers) == 0


def test_bad_accuracy_stores_nothing(r: redis.Redis, keys: Keys) -> None:
    recs = {"a": LabelerAccuracy.given(0.8, "file"), "b": LabelerAccuracy.given(1.01, "file")}
    with pytest.raises(RegistryError, match="labeler b: accuracy must be in"):
        store(r, keys, recs)
    assert r.exists(keys.labelers) == 0


def test_register_configured(r: redis.Redis, keys: Keys) -> None:
    settings = Settings(
        labelers=[
            {"id": "sim1", "backend": "simulated", "accuracy": 0.9},
            {"id": "sim2", "backend": "simulated", "accuracy": 0.7},
            {"id": "model", "backend": "python", "target": "m:f"},
        ]
    )
    store(r, keys, {"sim2": LabelerAccuracy(0.65, 0.6, 0.7, "assessment", 100)})
    register_configured(r, keys, settings, overwrite=False)
    assert get_accuracies(r, keys) == {"sim1": 0.9, "sim2": 0.65}  # the assessment is kept
    register_configured(r, keys, settings, labeler_ids=["sim2"])
    assert get_labelers(r, keys)["sim2"] == LabelerAccuracy.given(0.7, "config")
    assert "model" not in get_labelers(r, keys)


def test_register_configured_two_coin(r: redis.Redis, keys: Keys) -> None:
    settings = Settings(
        labelers=[
            {"id": "sim", "accuracy": 0.9, "sensitivity": 0.95, "specificity": 0.8},
            {"id": "vendor", "backend": "http", "target": "https://v.example/label",
             "sensitivity": 0.7, "specificity": 0.9},
            {"id": "plain", "accuracy": 0.75},
        ]
    )  # fmt: skip
    register_configured(r, keys, settings)
    got = get_labelers(r, keys)
    assert got["sim"] == LabelerAccuracy(
        0.9, 0.9, 0.9, "config", 0, TwoCoinRecord.given(0.95, 0.8, "config")
    )
    # coins without an accuracy: their mean is the accuracy (the share right at prior 1/2)
    assert got["vendor"].accuracy == pytest.approx(0.8)
    assert got["vendor"].two_coin_params() == TwoCoin(0.7, 0.9)
    assert got["plain"] == LabelerAccuracy.given(0.75, "config")


# --- the command ------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[redis]\nurl = "{redis_url}"\nprefix = "cam7"\n')
    return path


def test_cli_load_assess_list_round_trip(
    config: Path,
    tmp_path: Path,
    gold: tuple[Path, Path],
    r: redis.Redis,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acc = tmp_path / "acc.csv"
    acc.write_text("id,accuracy\nvendor,0.85\n")
    assert main(["labelers", "--config", str(config), "load", str(acc)]) == 0
    assert main(["labelers", "--config", str(config), "assess", *map(str, gold)]) == 0
    out = capsys.readouterr().out
    assert "w1" in out and "0.6667" in out and "[" in out  # estimate and interval shown
    assert main(["labelers", "--config", str(config), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["vendor"] == {
        "accuracy": 0.85,
        "lower": 0.85,
        "upper": 0.85,
        "source": "file",
        "n": 0,
    }
    assert listed["w1"]["accuracy"] == pytest.approx(4 / 6) and listed["w1"]["n"] == 4
    assert listed["w2"]["source"] == "assessment"
    assert main(["labelers", "--config", str(config), "assess", *map(str, gold), "--two-coin"]) == 0
    assert "sensitivity" in capsys.readouterr().out
    assert main(["labelers", "--config", str(config), "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["w1"]["two_coin"]["sensitivity"] == pytest.approx(2 / 4)
    assert "two_coin" not in listed["vendor"]
    assert set(r.hkeys(Keys("cam7").labelers)) == {"vendor", "w1", "w2"}  # under the prefix


def test_cli_assess_dry_run_stores_nothing(
    config: Path, gold: tuple[Path, Path], r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["labelers", "--config", str(config), "assess", *map(str, gold), "--estimator", "mle"]
    assert main([*args, "--dry-run"]) == 0
    assert "0.7500" in capsys.readouterr().out
    assert r.exists(Keys("cam7").labelers) == 0


def test_cli_bad_accuracy_is_a_one_line_error(
    config: Path, tmp_path: Path, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    acc = tmp_path / "acc.csv"
    acc.write_text("id,accuracy\nvendor,85\n")
    assert main(["labelers", "--config", str(config), "load", str(acc)]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err
        == f"labelers error: {acc}: line 2: labeler vendor: accuracy must be in [0, 1], got 85.0"
    )
    assert r.exists(Keys("cam7").labelers) == 0


def test_cli_without_redis_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GTX_REDIS__URL", raising=False)
    empty = tmp_path / "config.toml"
    empty.write_text("")
    assert main(["labelers", "--config", str(empty), "list"]) == 2
    assert "redis.url is empty" in capsys.readouterr().err


def test_load_reads_two_coin_columns(tmp_path: Path) -> None:
    table = tmp_path / "acc.csv"
    table.write_text(
        "id,accuracy,n,correct,sensitivity,specificity,sensitivity_lower,positives,negatives\n"
        "a,0.8,20,16,0.9,0.7,0.75,10,10\n"
        "b,0.75,,,,,,,\n"
    )
    got = load_file(table)
    assert got["a"].correct == 16 and got["a"].n == 20
    coins = got["a"].two_coin
    assert coins is not None and (coins.sensitivity, coins.specificity) == (0.9, 0.7)
    assert (coins.sensitivity_lower, coins.sensitivity_upper) == (0.75, 0.9)
    assert (coins.positives, coins.negatives, coins.source) == (10, 10, "file")
    assert got["b"].two_coin is None and got["b"].correct is None
    # the record keeps its JSON: no counts written where there were none
    assert "correct" not in json.loads(got["b"].to_json())


def test_load_refuses_one_coin_without_the_other(tmp_path: Path) -> None:
    table = tmp_path / "acc.csv"
    table.write_text("id,accuracy,sensitivity\na,0.8,0.9\n")
    with pytest.raises(RegistryError, match="sensitivity without its other coin"):
        load_file(table)
    table.write_text("id,accuracy,n,correct\na,0.8,5,6\n")
    with pytest.raises(RegistryError, match="correct <= n"):
        load_file(table)
