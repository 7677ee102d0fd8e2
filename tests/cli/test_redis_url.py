"""An unusable Redis URL is one line from every command that talks to Redis (issue 7, 2.7).

The URL is refused by the one client builder, ``store.connection.connect``, before anything
is read or started; no server is needed for that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gtx_stream.ops.synthetic import write_synthetic_video
from tests.cli.conftest import Gtx, one_line

URL = "http://example.invalid/0"
LABELERS = '[{"id": "a", "backend": "simulated", "accuracy": 0.9}]'

COMMANDS = {
    "ingest": ["ingest", "{video}"],
    "ingest-tasks": ["ingest", "--tasks", "{tasks}"],
    "labeler": ["labeler", "--all"],
    "aggregator": ["aggregator"],
    "tail": ["tail"],
    "status": ["status"],
    "labelers-load": ["labelers", "load", "{accuracies}"],
    "labelers-assess": ["labelers", "assess", "{tasks}/answers.csv", "{tasks}/truth.csv"],
    "labelers-list": ["labelers", "list"],
    "demo": ["demo", "--frames", "2", "--labelers", "1"],
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Inputs each command accepts, so that only the URL can be what it refuses."""
    video = tmp_path / "clip.avi"
    write_synthetic_video(video, 2, seed=0)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "answers.csv").write_text("task,worker,label\nt1,a,1\nt2,a,0\n")
    (tasks / "truth.csv").write_text("task,truth\nt1,1\nt2,0\n")
    accuracies = tmp_path / "accuracies.csv"
    accuracies.write_text("id,accuracy\na,0.9\n")
    return {"video": str(video), "tasks": str(tasks), "accuracies": str(accuracies)}


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_an_unusable_redis_url_is_one_line_and_exit_2(
    gtx: Gtx, files: dict[str, str], command: list[str]
) -> None:
    args = [arg.format(**files) for arg in command]
    done = gtx(*args, GTX_REDIS__URL=URL, GTX_LABELERS=LABELERS)
    line = one_line(done.stderr)
    assert done.returncode == 2, done.stderr
    assert line.startswith("config error: redis.url: "), line
    assert "redis://, rediss://, unix://" in line, line
    assert done.stdout == ""


def test_status_check_reports_the_unusable_url_as_unhealthy(gtx: Gtx) -> None:
    done = gtx("status", "--check", GTX_REDIS__URL=URL)
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("unhealthy: config error: redis.url: ")


@pytest.mark.parametrize(
    ("url", "says"),
    [("redis://127.0.0.1:port/0", "Port could not be cast"), ("", "redis.url is empty")],
    ids=["bad-port", "empty"],
)
def test_other_unusable_urls_get_the_same_builder_message(gtx: Gtx, url: str, says: str) -> None:
    for command in (["aggregator"], ["tail"], ["labelers", "list"]):
        done = gtx(*command, GTX_REDIS__URL=url)
        assert done.returncode == 2
        assert says in one_line(done.stderr), command
