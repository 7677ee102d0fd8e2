"""The services of docker-compose.yml as it runs them: the workers' processes and health checks.

tests/ops/test_compose.py checks the file; here the entry points of workers/ run as processes
and each service's health check (``gtx-stream status --check``) runs with that service's ACL
user of docs/access.md, on a state Redis and on a queue Redis of its own.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from gtx_stream.cli import main
from gtx_stream.config import EXIT_CONFIG
from gtx_stream.ops.embedded import EmbeddedRedis, free_port
from gtx_stream.store.keys import Keys
from gtx_stream.store.params import LabelerAccuracy, store

ROOT = Path(__file__).resolve().parents[2]
WORKERS = ("ingester", "labeler", "aggregator", "exporter", "estimator", "label_server")
ACCESS = ROOT / "docs" / "access.md"
KEYS = Keys("gtx")
HEALTH_CHECK = ["CMD", "gtx-stream", "status", "--check"]


def _compose_services_with_health_checks() -> list[str]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return sorted(n for n, s in services.items() if s["healthcheck"]["test"] == HEALTH_CHECK)


def _acl_block(after: str) -> str:
    section = ACCESS.read_text().split(after, 1)[1]
    found = re.search(r"```text\n(user default .*?)```", section, re.S)
    assert found, f"docs/access.md has no ACL block after {after!r}"
    return found.group(1)


def _passwords(acl: str) -> dict[str, str]:
    return dict(re.findall(r"^user (\S+) on >(\S+) ", acl, re.M))


@pytest.fixture
def queue_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A queue Redis with the ACL block of docs/access.md for it."""
    acl = tmp_path / "queues.acl"
    acl.write_text(_acl_block("## A queue Redis"))
    (tmp_path / "queues").mkdir()
    server = EmbeddedRedis(data_dir=tmp_path / "queues", extra_args=["--aclfile", str(acl)])
    server.start()
    yield server
    server.stop()


def _health_checks_refused(
    state_url: str, cluster: bool, queues: EmbeddedRedis, tmp_path: Path
) -> dict[str, str]:
    """Run `status --check` as each compose service's user; the ones that fail."""
    services = _compose_services_with_health_checks()
    assert services == sorted(
        ["ingester", "labeler", "aggregator", "exporter", "estimator", "label-server"]
    )
    block = "## On a Redis Cluster" if cluster else "## The ACL file"
    state_pw = _passwords(_acl_block(block))
    queue_pw = _passwords(_acl_block("## A queue Redis"))
    failed = {}
    for service in services:
        user = f"gtx-{service}"
        assert user in state_pw and user in queue_pw, f"{user}: no ACL user in docs/access.md"
        config = tmp_path / f"{service}.toml"
        config.write_text(
            f"[redis]\ncluster = {str(cluster).lower()}\n"
            f'url = "redis://{user}:{state_pw[user]}@{state_url}"\n'
            f'queue_url = "redis://{user}:{queue_pw[user]}@127.0.0.1:{queues.port}/0"\n'
        )
        if main(["status", "--check", "--config", str(config)]) != 0:
            failed[service] = user
    client = redis.Redis(port=queues.port, password=queue_pw["default"], decode_responses=True)
    # CLIENT SETINFO of redis-py on Redis 7.2 and later: refused harmlessly (docs/access.md)
    assert [e for e in client.acl_log() if "setinfo" not in e["object"]] == []
    return failed


@pytest.mark.redis
def test_each_services_health_check_passes_as_its_user(
    queue_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """docker-compose.yml gives every gtx-stream service `status --check` as its health check;
    run with the service's own user (GTX_REDIS__URL per service, docs/access.md) it must pass,
    or the container is reported unhealthy for a refused command (the estimator's was)."""
    acl = tmp_path / "state.acl"
    acl.write_text(_acl_block("## The ACL file"))
    (tmp_path / "state").mkdir()
    state = EmbeddedRedis(data_dir=tmp_path / "state", extra_args=["--aclfile", str(acl)])
    state.start()
    try:
        admin = redis.Redis(port=state.port, password=_passwords(acl.read_text())["default"])
        # registered labelers: status reads each one's queue length on the queue Redis
        store(admin, KEYS, {lab: LabelerAccuracy.given(0.8, "config") for lab in ("a", "b")})
        admin.xgroup_create(KEYS.final, "exporter", id="0", mkstream=True)
        url = f"127.0.0.1:{state.port}/0"
        assert _health_checks_refused(url, False, queue_server, tmp_path) == {}
        refused = [e for e in admin.acl_log() if b"setinfo" not in e["object"]]
        assert refused == [], refused
    finally:
        state.stop()


@pytest.mark.redis
@pytest.mark.timeout(180)
def test_each_services_health_check_passes_as_its_user_on_a_cluster(
    queue_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The same with the state on a Redis Cluster and its ACL file (the aggregator's user could
    not read the gold counts there, nor the estimator's anything of status)."""
    from tests.cluster_fixtures import LocalCluster, cluster_unavailable

    reason = cluster_unavailable()
    if reason is not None:
        pytest.skip(reason)
    acl = _acl_block("## On a Redis Cluster")
    with LocalCluster(acl=acl, password=_passwords(acl)["default"]) as cluster:
        admin = cluster.client()
        keys = Keys("gtx", cluster=True)
        store(admin, keys, {lab: LabelerAccuracy.given(0.8, "config") for lab in ("a", "b")})
        url = f"127.0.0.1:{cluster.masters()[0][0]}"
        assert _health_checks_refused(url, True, queue_server, tmp_path) == {}


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 (a local test URL)
    except urllib.error.HTTPError:
        return True  # it answers (401: no login)
    except OSError:
        return False
    return True


@pytest.mark.redis
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("entry", ["worker", "cli"])
def test_the_label_server_service_exits_0_when_stopped(
    redis_url: str, tmp_path: Path, sig: signal.Signals, entry: str
) -> None:
    """`docker compose down` sends SIGTERM; uvicorn shuts down and then raises the signal
    again, so without a handler the process died of it (exit -15 here, 143 in a container)."""
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n')
    port = free_port()
    env = {**os.environ, "GTX_CONFIG": str(config), "HOST": "127.0.0.1", "PORT": str(port),
           "GTX_LABEL_SERVER__PUBLIC_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
    command = (
        [str(ROOT / "workers" / "label_server.py")]
        if entry == "worker"
        else ["-m", "gtx_stream", "label-server", "--host", "127.0.0.1", "--port", str(port)]
    )
    proc = subprocess.Popen(
        [sys.executable, *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"http://127.0.0.1:{port}/"):
            assert proc.poll() is None, proc.communicate()[0].decode()
            assert time.monotonic() < deadline, "the label server never answered"
            time.sleep(0.1)
        proc.send_signal(sig)
        code = proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = proc.communicate()[0].decode()
    assert code == 0, output


def _run_worker(
    worker: str, tmp_path: Path, config: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """``workers/<worker>.py`` as compose and systemd run it, with ``config`` as its
    config.toml and no GTX_* settings variable of the shell."""
    path = tmp_path / f"{worker}.toml"
    path.write_text(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GTX_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "workers" / f"{worker}.py")],
        env={**clean, "GTX_CONFIG": str(path), "HOST": "127.0.0.1", **env},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("worker", WORKERS)
def test_each_service_exits_2_on_a_configuration_error(worker: str, tmp_path: Path) -> None:
    """docker-compose.yml restarts a service that exits; under systemd's
    RestartPreventExitStatus=2 (workers/gtx-stream@.service) a bad setting is not restarted."""
    done = _run_worker(worker, tmp_path, "[aggregator]\ntau = 2.0\n", SOURCE="/input/a.mp4")
    assert done.returncode == EXIT_CONFIG == 2, done.stderr
    assert _one_line(done).startswith("config error: aggregator.tau: Input should be less")


CLOSED = f'[redis]\nurl = "redis://127.0.0.1:{free_port()}/0"\n'  # nothing listens there


@pytest.mark.parametrize(
    ("worker", "config", "env", "line"),
    [
        ("ingester", CLOSED, {"SOURCE": "/input/missing.mp4"},
         "gtx-stream ingest: error: no such file: /input/missing.mp4"),
        ("ingester", CLOSED, {"SOURCE": "", "SOURCES": ""},
         "ingester: set SOURCE (a video, camera index, stream URL or folder) or SOURCES "
         "(a sources file)"),
        ("labeler", CLOSED, {}, "config error: labelers: none configured"),
    ],
    ids=["ingester-missing-file", "ingester-no-source", "labeler-none-configured"],
)  # fmt: skip
def test_a_service_given_an_input_it_cannot_use_exits_2(
    worker: str, config: str, env: dict[str, str], line: str, tmp_path: Path
) -> None:
    """Before, a missing video and an unset SOURCE exited 1, as a camera not there yet does."""
    done = _run_worker(worker, tmp_path, config, **env)
    assert (done.returncode, _one_line(done)) == (EXIT_CONFIG, line)


def test_the_exporter_and_the_label_server_refuse_a_folder_or_address_with_2(
    redis_url: str, tmp_path: Path
) -> None:
    config = f'[redis]\nurl = "{redis_url}"\n'
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _run_worker("exporter", tmp_path, config, OUT=str(blocker / "dataset"))
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert _one_line(done) == f"gtx-stream export: cannot write to {blocker / 'dataset'}: " \
        "Not a directory"  # fmt: skip
    done = _run_worker("label_server", tmp_path, config, HOST="192.0.2.1", PORT="8000")
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert "label server: cannot listen on 192.0.2.1:8000: " in done.stderr


@pytest.mark.parametrize("worker", [w for w in WORKERS if w != "ingester"])
def test_a_service_whose_redis_does_not_answer_exits_1_to_be_restarted(
    worker: str, tmp_path: Path
) -> None:
    """A Redis not up yet (a host's reboot) is no configuration error: exit 1, restarted. It
    was 2, which RestartPreventExitStatus=2 would have left down for good. (The ingester
    waits for its Redis instead.)"""
    config = CLOSED + '[[labelers]]\nid = "m1"\nbackend = "simulated"\naccuracy = 0.9\n'
    done = _run_worker(worker, tmp_path, config, PORT=str(free_port()))
    assert done.returncode == 1, done.stderr
    assert "is unreachable" in done.stderr.strip().splitlines()[-1]


@pytest.mark.redis
def test_the_label_server_on_a_port_in_use_says_so_in_one_line(
    redis_url: str, tmp_path: Path
) -> None:
    """Before, "label server on http://127.0.0.1:PORT" came first, then uvicorn's error."""
    config = tmp_path / "config.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gtx_stream", "--log-level", "INFO", "label-server",
             "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert done.stdout == "" and "label server on" not in done.stderr
    assert _one_line(done) == (
        f"label server: port {port} is in use on 127.0.0.1: another label server, or another "
        "program, listens there; stop it or set label_server.port (--port)"
    )
