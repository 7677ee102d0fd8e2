"""The `gtx-stream` command as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gtx_stream.cli import main


def test_every_sub_command_has_help() -> None:
    out = subprocess.run([sys.executable, "-m", "gtx_stream", "--help"], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    for name in ("demo", "simulate", "replay", "ingest", "labeler", "aggregator", "tail",
                 "status", "labelers"):  # fmt: skip
        assert name in out


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
