"""The `gtx-stream` command line as a user meets it: version, help, options, errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from gtx_stream.cli import COMMANDS, build_parser, main
from tests.cli.conftest import Gtx, one_line

Parsers = Iterator[tuple[str, argparse.ArgumentParser]]


def parsers(parser: argparse.ArgumentParser, path: str = "") -> Parsers:
    """Every parser of the command line, named by its path: "", "labelers", "labelers load"."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from parsers(child, f"{path} {name}".strip())


def sub_commands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str | None]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                yield choice.dest, choice.help


def test_version_comes_from_the_package_metadata(gtx: Gtx) -> None:
    done = gtx("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"gtx-stream {metadata.version('gtx-stream')}"


def test_top_level_help_lists_every_sub_command(gtx: Gtx) -> None:
    done = gtx("--help")
    assert done.returncode == 0, done.stderr
    for name in COMMANDS:
        command = name.replace("_", "-")  # the module label_server is `label-server`
        assert f"\n    {command} " in done.stdout, name


def test_every_sub_command_has_a_one_line_description() -> None:
    """In the list of its parent's --help, and at the top of its own --help."""
    found = []
    for path, parser in parsers(build_parser()):
        listing = " ".join(parser.format_help().split())
        for name, text in sub_commands(parser):
            child = f"{path} {name}".strip()
            found.append(child)
            assert text and "\n" not in text, f"{child}: no one-line help"
            assert f"{name} {' '.join(text.split())}" in listing, child
            own = dict(parsers(build_parser()))[child]
            assert own.description, f"`gtx-stream {child} --help` does not say what it does"
    assert {"status", "labelers load", "labelers assess", "labelers list"} <= set(found)


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "DEBUG", "status"],
        ["status", "--log-level", "DEBUG"],
        ["status", "--log-level", "debug"],
        ["labelers", "--log-level", "DEBUG", "list"],
        ["labelers", "list", "--log-level", "DEBUG"],
        ["tail", "--json", "--log-level", "DEBUG", "--count", "1"],
    ],
    ids=lambda a: " ".join(a),
)
def test_log_level_is_accepted_before_and_after_the_sub_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).log_level == "DEBUG"


def test_a_log_level_given_first_is_kept_by_the_sub_command() -> None:
    assert build_parser().parse_args(["status"]).log_level == "INFO"
    assert build_parser().parse_args(["--log-level", "ERROR", "status"]).log_level == "ERROR"


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["status", "--log-level", "LOUD"])
    assert done.value.code == 2
    assert "--log-level" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["labelers", "--config", "c.toml", "load", "a.csv"],
        ["labelers", "load", "a.csv", "--config", "c.toml"],
        ["status", "--config", "c.toml"],
        ["--config", "c.toml", "status"],
        ["--config", "c.toml", "labelers", "load", "a.csv"],
        ["--config", "c.toml", "ingest", "video.avi"],
    ],
    ids=lambda a: " ".join(a),
)
def test_config_is_accepted_after_a_sub_sub_command(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).config == "c.toml"


def test_no_config_given_is_none_everywhere() -> None:
    assert build_parser().parse_args(["status"]).config is None
    assert build_parser().parse_args(["labelers", "load", "a.csv"]).config is None


def test_config_option_is_spelled_the_same_everywhere() -> None:
    spelled = {}
    for path, parser in parsers(build_parser()):
        option = parser._option_string_actions.get("--config")
        if option is not None:
            spelled[path] = (option.metavar, option.help)
    readers = {"demo", "ingest", "labeler", "aggregator", "tail", "status", "labelers"}
    assert readers <= set(spelled), f"no --config: {readers - set(spelled)}"
    first = spelled["status"]
    differ = {path: value for path, value in spelled.items() if value != first}
    assert not differ, f"status has {first}, these differ: {differ}"
    assert first[0] == "PATH"


def test_no_help_shows_a_doubled_percent_sign() -> None:
    for path, parser in parsers(build_parser()):
        assert "%%" not in parser.format_help(), f"gtx-stream {path} --help"


def test_labelers_assess_help_says_95_percent(gtx: Gtx) -> None:
    done = gtx("labelers", "assess", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "95% credible interval" in text and "%%" not in text


@pytest.mark.parametrize(
    "value",
    ["not json", "[{'id': 'a'}]", '{"id": "a", "accuracy": 0.9}', '"a"', "[1]"],
    ids=["not-json", "python-syntax", "an-object", "a-string", "a-number-in-a-list"],
)
def test_a_malformed_gtx_labelers_names_the_variable_in_one_line(gtx: Gtx, value: str) -> None:
    done = gtx("status", GTX_LABELERS=value, GTX_REDIS__URL="redis://127.0.0.1:1/0")
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("config error: labelers") and "GTX_LABELERS" in line, line
    for internal in ("EnvSettingsSource", "pydantic", "instance of", "None"):
        assert internal not in line, line


def test_a_closed_pipe_ends_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    """`gtx-stream ... | head`: once the reader is gone, exit 0 without a traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    stdout = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["simulate", "threshold", "--trials", "1", "--json"]) == 0
    finally:
        monkeypatch.undo()
        stdout.close()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        (
            "GTX_REDIS_URL",
            "GTX_REDIS_URL is not read (one underscore): did you mean GTX_REDIS__URL?",
        ),
        ("GTX_AGGREGATOR_TAU", "did you mean GTX_AGGREGATOR__TAU?"),
        ("GTX_LABEL_SERVER_PORT", "did you mean GTX_LABEL_SERVER__PORT?"),
        ("GTX_AGGREGATR__TAU", "GTX_AGGREGATR__TAU: no settings section 'aggregatr' (sections: "),
    ],
    ids=["one-underscore-url", "one-underscore-tau", "section-with-underscore", "unknown-section"],
)
def test_a_misspelt_settings_variable_stops_the_command(gtx: Gtx, name: str, says: str) -> None:
    # these were ignored: the command ran on the default (tau 0.99, no Redis URL) with exit 0
    done = gtx("labeler", "--all", **{name: "0.95"})
    assert done.returncode == 2
    assert one_line(done.stderr).startswith("config error: ") and says in done.stderr


def test_other_gtx_variables_are_left_alone() -> None:
    from gtx_stream.cli.environment import check_environment

    check_environment({"GTX_CONFIG": "x", "GTX_MODEL_DIR": "m", "GTX_REDIS_PORT": "6380",
                       "GTX_TEST_REDIS_URL": "u", "GTX_AGGREGATOR__TAU": "0.9",
                       "GTX_LABELERS": "[]", "GTX_AGGREGATOR": "{}"})  # fmt: skip


def _stop_lines(caplog: pytest.LogCaptureFixture, logger: str, *what: str) -> list[Any]:
    """The log records of ``stop_on_signals(stop, logger, *what)`` when a SIGTERM comes."""
    import logging
    import signal
    import threading

    from gtx_stream.cli.aggregator import stop_on_signals

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    stop = threading.Event()
    try:
        stop_on_signals(stop, logging.getLogger(logger), *what)
        with caplog.at_level(logging.INFO):
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.wait(5)
    finally:
        signal.signal(signal.SIGTERM, before[0])
        signal.signal(signal.SIGINT, before[1])
    return [r for r in caplog.records if r.getMessage().startswith("signal")]


def test_a_service_logs_its_stop_signal_under_its_own_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    records = _stop_lines(caplog, "gtx_stream.pipeline.export.exporter")
    names = [r.name for r in records if "finishing the current batch" in r.getMessage()]
    assert names == ["gtx_stream.pipeline.export.exporter"]


def test_the_estimator_says_it_finishes_its_fit_not_a_batch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It has no batch: before, its stop line said 'finishing the current batch'."""
    import signal

    records = _stop_lines(caplog, "gtx_stream.pipeline.estimate.service", "fit")
    said = [r.getMessage() for r in records]
    assert said == [f"signal {signal.SIGTERM.value}: finishing the current fit"]


def test_the_label_server_warns_when_invite_links_miss_its_port() -> None:
    from gtx_stream.cli.label_server import _stray_public_port

    warning = _stray_public_port("http://127.0.0.1:8000", 7405)
    assert warning is not None and "listens on port 7405" in warning
    assert _stray_public_port("http://127.0.0.1:8000", 8000) is None
    assert _stray_public_port("http://localhost", 80) is None
    assert _stray_public_port("https://label.example.com", 8000) is None  # behind a proxy


@pytest.mark.redis
def test_usr1_prints_every_threads_stack_on_stderr(redis_url: str, tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    err = tmp_path / "stderr.txt"
    env = {**os.environ, "GTX_REDIS__URL": redis_url, "GTX_REDIS__PREFIX": "usr1"}
    with err.open("w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "gtx_stream", "aggregator"],
                                env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=fh)  # fmt: skip
    try:
        deadline = time.monotonic() + 30  # its start line comes after the handler is set
        while "aggregator " not in err.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, err.read_text()
            time.sleep(0.1)
        proc.send_signal(signal.SIGUSR1)
        while "most recent call first" not in err.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proc.poll() is None  # it goes on
        assert "most recent call first" in err.read_text() and "aggregator.py" in err.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


def test_every_seed_option_refuses_a_negative_seed() -> None:
    """numpy's generators refuse a negative seed with a traceback from deep inside (stand-in,
    demo, train), or a bare 'expected non-negative integer' (simulate, experiment)."""
    seeds = [(path, action) for path, parser in parsers(build_parser())
             for action in parser._actions
             if {"--seed", "--standin-seed"} & set(action.option_strings)]  # fmt: skip
    assert {path for path, _ in seeds} >= {"demo", "replay", "simulate threshold",
                                           "simulate uncertainty", "stand-in", "train",
                                           "experiment finetune"}  # fmt: skip
    for path, action in seeds:
        assert callable(action.type), path
        assert action.type("0") == 0, path
        with pytest.raises(argparse.ArgumentTypeError, match="must be 0 or more, got -1"):
            action.type("-1")
