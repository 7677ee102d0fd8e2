"""`gtx-stream simulate threshold|uncertainty`: JSON, tables, figures and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gtx_stream.cli import main


def test_cli_threshold_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["simulate", "threshold", "--trials", "2", "--budget", "200", "--taus", "0.9,0.99"]
        + ["--accuracy", "true,beta", "--assess-size", "5", "--json"]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["taus"] == [0.9, 0.99] and doc["budget"] == 200
    # 2 estimators x 2 cohorts x (GTX, SV at 2 taus + MV, WMV at k = 1..5)
    assert len(doc["rows"]) == 2 * 2 * (2 * 2 + 2 * 5)
    row = doc["rows"][0]
    for field in ("cohort", "method", "tau", "k", "avg_k", "n_labeled", "error", "error_se"):
        assert field in row
    for field in ("mae", "mae_se", "trials", "accuracy", "assess_size", "best"):
        assert field in row
    bests = [r for r in doc["rows"] if r["best"]]
    assert len(bests) == 2 * 2 * 4


def test_cli_threshold_table(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "threshold", "--trials", "2", "--budget", "100", "--cohort", "accurate"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "More accurate labelers" in out and "Less accurate" not in out
    assert [line.split()[0] for line in out.splitlines()[2:6]] == ["MV", "WMV", "SV", "GTX"]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--taus", "0.99,0.9"], "increasing"),
        (["--taus", "0.4:0.9:0.1"], "(0.5, 1)"),
        (["--accuracy", "mle", "--assess-size", "0"], "assess-size"),
        (["--accuracy", "exact"], "not one of"),
        (["--kappa", "11"], "kappa"),
        (["--trials", "0"], "trials"),
        (["--taus", "0.6:0.999:0.002"], "at most 127 taus"),  # was an OverflowError
    ],
)
def test_cli_threshold_bad_values(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "threshold", "--budget", "50", *extra]) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


def test_cli_uncertainty_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        ["simulate", "uncertainty", "--trials", "2", "--examples", "40", "--budget", "100"]
        + ["--curve-every", "20", "--json", "--plot", str(tmp_path)]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["rows"]) == 8 and doc["rows"][0]["avg_k"] == 2.5
    curve = doc["curves"][0]
    assert curve["labels"] == [40, 60, 80, 100]
    assert len(curve["error"]) == len(curve["mae_se"]) == 4
    assert (tmp_path / "figure2.png").stat().st_size > 1000
    assert doc["tie_break"] == "random"
    rc = main(
        ["simulate", "threshold", "--trials", "2", "--budget", "100", "--plot", str(tmp_path)]
    )
    assert rc == 0
    assert (tmp_path / "figure1.png").stat().st_size > 1000


def test_cli_uncertainty_table_and_bad_budget(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "uncertainty", "--trials", "1", "--examples", "20", "--budget"]
    assert main([*args, "50"]) == 0
    out = capsys.readouterr().out
    assert "MV" in out and "GTX" in out and "20 examples" in out
    assert main([*args, "201"]) == 2
    assert "--budget" in capsys.readouterr().err


def test_cli_two_coin_model_and_em_on_the_class_conditional_cohorts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = main(
        ["simulate", "threshold", "--trials", "2", "--budget", "300", "--taus", "0.95,0.99"]
        + ["--cohort", "two_coin", "--model", "two_coin", "--accuracy", "beta,em"]
        + ["--assess-size", "10", "--every", "50", "--json"]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "two_coin" and doc["every"] == 50
    assert {r["cohort"] for r in doc["rows"]} == {"class_conditional", "misses_positives"}
    assert {r["accuracy"] for r in doc["rows"]} == {"beta", "em"}
    assert all(r["assess_size"] == 10 for r in doc["rows"])
    rc = main(["simulate", "threshold", "--trials", "2", "--budget", "200", "--cohort",
               "misses_positives", "--model", "two_coin", "--accuracy", "em", "--assess-size",
               "5"])  # fmt: skip
    assert rc == 0
    out = capsys.readouterr().out
    assert "Class-conditional labelers (s_j ~ U(0.6, 0.85), t_j ~ U(0.9, 1))" in out
    assert "GTX two-coin, em parameters from 5 gold items per labeler" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["threshold", "--accuracy", "em", "--assess-size", "0"], "assess-size"),
        (["threshold", "--accuracy", "em", "--every", "0"], "--every"),
        (["threshold", "--model", "three_coin"], "invalid choice"),
        (["uncertainty", "--examples", "20", "--accuracy", "em"], "threshold experiment only"),
    ],
)
def test_cli_em_and_model_bad_values(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        rc = main(["simulate", *argv, "--budget", "50"])
    except SystemExit as exit_:  # argparse's own refusal
        rc = int(exit_.code or 0)
    assert rc == 2
    assert message in capsys.readouterr().err


def test_cli_uncertainty_two_coin(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["simulate", "uncertainty", "--trials", "1", "--examples", "30", "--budget", "60",
               "--cohort", "misses_positives", "--model", "two_coin", "--json"])  # fmt: skip
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == "two_coin" and len(doc["rows"]) == 4


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--every", "50"], "--every is EM's refit cadence: it goes with --accuracy em"),
        (["--accuracy", "true", "--assess-size", "5"], "--assess-size is the gold items of mle"),
    ],
    ids=["every-without-em", "assess-size-with-true-accuracies"],
)
def test_an_option_the_run_would_ignore_is_refused(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before, both ran and printed the same table as without them."""
    assert main(["simulate", "threshold", "--trials", "1", "--budget", "50", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_em_settings_show_a_progress_line_unless_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    """``--accuracy em`` runs each setting as a stream of its own (minutes at 100 trials)."""
    argv = ["simulate", "threshold", "--trials", "1", "--budget", "60", "--taus", "0.9,0.99",
            "--kappa", "2", "--cohort", "accurate", "--accuracy", "em", "--assess-size", "3",
            "--every", "30", "--json"]  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    json.loads(out)  # stdout stays one JSON document
    # GTX and SV at 2 taus, MV and WMV at k = 1, 2: 8 settings of one cohort
    assert err.splitlines()[-1].startswith("simulate em settings  8/8  100%")
    assert main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
