"""workers/gtx-stream@.service: the systemd template that runs each entry point of workers/.

Read as an INI file here; where ``systemd-analyze`` is on PATH, ``systemd-analyze verify``
checks each instance too (with the checkout and this Python in place of /opt/gtx-stream). No
systemd runs it here: what is checked is the file and the exit statuses it relies on
(tests/ops/test_services.py runs the entry points).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gtx_stream.config import EXIT_CONFIG

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "workers" / "gtx-stream@.service"
INSTANCES = sorted(p.stem for p in (ROOT / "workers").glob("*.py"))
INSTALLED = "/opt/gtx-stream"


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # keys keep their case
    parser.read_string(UNIT.read_text())
    return parser


def test_a_configuration_error_is_not_restarted_and_anything_else_is() -> None:
    service = _unit()["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == str(EXIT_CONFIG) == "2"
    # systemd gives up on a unit started 5 times in 10 s: restarts 5 s apart never are
    assert float(service["RestartSec"]) >= 2.5
    assert "StartLimitBurst" not in _unit()["Unit"]


def test_each_instance_runs_an_entry_point_of_workers() -> None:
    service = _unit()["Service"]
    python, script = service["ExecStart"].split()
    assert python == f"{INSTALLED}/.venv/bin/python"
    assert script == f"{INSTALLED}/workers/%i.py"
    assert service["WorkingDirectory"] == INSTALLED
    assert service["Environment"] == "GTX_CONFIG=/etc/gtx-stream/config.toml"
    assert service["EnvironmentFile"] == "-/etc/gtx-stream/%i.env"  # "-": optional
    expected = ["aggregator", "estimator", "exporter", "ingester", "label_server", "labeler"]
    assert expected == INSTANCES
    # the comment at the top names every instance there is
    head = UNIT.read_text().split("[Unit]")[0]
    assert all(name in head for name in INSTANCES)


@pytest.mark.parametrize("instance", INSTANCES)
def test_systemd_analyze_verify_accepts_each_instance(instance: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("no systemd-analyze on PATH")
    text = UNIT.read_text().replace(f"{INSTALLED}/.venv/bin/python", sys.executable)
    text = text.replace(INSTALLED, str(ROOT)).replace("User=gtx-stream\n", "")
    unit = tmp_path / f"gtx-stream@{instance}.service"
    unit.write_text(text)
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    # an unknown key or a value it cannot parse is only a line on stderr, exit 0
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert (ROOT / "workers" / f"{instance}.py").is_file()
