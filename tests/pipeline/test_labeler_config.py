"""A labeler as its user configures and starts it: refused settings, the command's errors, and
a python labeler's module and metadata, through the ``gtx-stream`` script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from gtx_stream.cli import main
from gtx_stream.config import ConfigError, load_settings
from gtx_stream.pipeline.label.requests import enqueue_request
from gtx_stream.store.keys import Keys
from tests.pipeline.test_labeler import labels, put_frame

SCRIPT = Path(sys.executable).with_name("gtx-stream")

MISCONFIGURED = {
    # [[labelers]] body: (the field named, what the message says)
    "python-no-target": ('backend = "python"', "target", "python labeler 'x' needs target"),
    "python-no-function": (
        'backend = "python"\ntarget = "my_model"',
        "target",
        "'module:function' (got 'my_model')",
    ),
    "http-not-a-url": (
        'backend = "http"\ntarget = "labels.example.com/v1"',
        "target",
        "an http:// or https://",
    ),
    "http-ftp": ('backend = "http"\ntarget = "ftp://example.com/x"', "target", "http labeler"),
    "replay-no-folder": ('backend = "replay"', "target", "replay labeler 'x' needs target"),
    "simulated-no-accuracy": ('backend = "simulated"', "accuracy", "needs an accuracy"),
    "default-backend-no-accuracy": ("seed = 3", "accuracy", "simulated labeler 'x' needs"),
}


@pytest.mark.parametrize("case", sorted(MISCONFIGURED))
def test_a_misconfigured_labeler_is_refused_when_the_config_is_loaded(
    tmp_path: Path, case: str
) -> None:
    body, field, says = MISCONFIGURED[case]
    config = tmp_path / "c.toml"
    config.write_text(f'[[labelers]]\nid = "x"\n{body}\n')
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    message = str(err.value)
    assert message.startswith(f"config error: labelers.0.{field}: "), message
    assert says in message and "\n" not in message, message


@pytest.mark.parametrize(
    "command",
    [["labeler", "--all"], ["aggregator"], ["ingest", "VIDEO"], ["status"], ["tail"],
     ["labelers", "list"], ["demo"]],
    ids=lambda c: c[0],
)  # fmt: skip
def test_every_command_refuses_a_misconfigured_labeler_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[labelers]]\nid = "model"\nbackend = "python"\ntarget = "predict"\n')
    args = [str(tmp_path / "v.avi") if a == "VIDEO" else a for a in command]
    assert main([args[0], "--config", str(config), *args[1:]]) == 2
    out = capsys.readouterr()
    assert out.err.strip() == (
        "config error: labelers.0.target: python labeler 'model' needs target = "
        "'module:function' (got 'predict')"
    )


def _script(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``gtx-stream ARGS`` as installed (not ``python -m``), in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTX_") and k != "PYTHONPATH"}
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the gtx-stream script is not installed")
def test_labeler_with_an_unusable_redis_url_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        '[redis]\nurl = "http://127.0.0.1:6379/0"\n\n[[labelers]]\nid = "a"\naccuracy = 0.8\n'
    )
    done = _script(tmp_path, "labeler", "--all")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "config error: redis.url: Redis URL must specify one of the following schemes "
        "(redis://, rediss://, unix://)"
    ]


@pytest.mark.skipif(not SCRIPT.is_file(), reason="the gtx-stream script is not installed")
def test_python_labeler_beside_the_config_runs_and_never_sees_the_truth(
    redis_url: str, r: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    """The model module sits in the folder the command runs in, as `python -m` would find it;
    it answers 1 only if the frame's truth reached it."""
    (tmp_path / "my_model.py").write_text(
        "def predict(image, metadata):\n"
        "    assert image.shape == (16, 16, 3)\n"
        "    return int('truth' in metadata)\n"
    )
    (tmp_path / "config.toml").write_text(
        f'[redis]\nurl = "{redis_url}"\n\n'
        '[[labelers]]\nid = "model"\nbackend = "python"\ntarget = "my_model:predict"\n'
    )
    put_frame(r, keys, "cam-1", truth=1)
    enqueue_request(r, keys, "model", "cam-1", "r1", lease_seconds=30)
    done = _script(tmp_path, "labeler", "--id", "model", "--burst")
    assert done.returncode == 0, done.stderr
    assert [(e["request_id"], e.get("label")) for e in labels(r, keys)] == [("r1", "0")]
