"""Running ``gtx-stream`` as a user does: a real process, in a folder without a config file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Gtx = Callable[..., subprocess.CompletedProcess[str]]
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def gtx(tmp_path: Path) -> Gtx:
    """``gtx("status", GTX_REDIS__URL=...)``: run the command; no GTX_* of the caller leaks in."""

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("GTX_")}
        return subprocess.run(
            [sys.executable, "-m", "gtx_stream", *args],
            cwd=tmp_path,
            env={**environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


def one_line(stream: str) -> str:
    """The only line of ``stream``; fails on a traceback or several lines."""
    lines = stream.strip().splitlines()
    assert "Traceback" not in stream and len(lines) == 1, stream
    return lines[0]


@pytest.fixture
def cli(
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Cli:
    """``cli("dead", "--json")``: run the command in-process, in a folder without a config
    file, against the test database; returns (exit status, stdout, stderr)."""
    from gtx_stream.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GTX_REDIS__URL", redis_url)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
