"""README.md's client examples, run as they are against a real pipeline: an aggregator and a
labeler worker (processes) with ``python`` labelers that answer 1 for a bright image."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pipeline_fixtures import pipeline

ROOT = Path(__file__).resolve().parents[2]
LABELERS = {"model-a": 0.9, "model-b": 0.85, "model-c": 0.8}


def readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in README.md."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(f"\n{heading}\n") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, f"no python block after {heading!r}"
    return found.group(1)


def run_example(code: str, config: Path, cwd: Path) -> list[str]:
    env = {**os.environ, "GTX_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.redis
@pytest.mark.slow
def test_the_readme_client_examples_run(tmp_path: Path, redis_url: str) -> None:
    submit_and_wait = readme_block("### Client: submit a frame and wait for its label")
    consume = readme_block("## Consuming finalised labels")
    labelers = [
        {"id": lab, "backend": "python", "target": "tests.labeler_fixtures:bright", "accuracy": a}
        for lab, a in LABELERS.items()
    ]
    with pipeline(tmp_path, redis_url, labelers=labelers) as p:
        p.start("aggregator", "aggregator")
        p.start("labeler", "labeler", "--all")
        p.wait_aggregator_group()
        p.wait_live(list(LABELERS))
        out = run_example(submit_and_wait, p.config, tmp_path)
        assert out == ["line3-0 1 0.9951219512195122 confident 3", "{'part': 'A-0042'}"], out
        assert run_example(consume, p.config, tmp_path) == [
            "line3-0 1 0.9951219512195122 confident [1, 1, 1]"
        ]
        # the group remembers what it acknowledged
        assert run_example(consume, p.config, tmp_path) == []
