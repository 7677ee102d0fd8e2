"""docker-compose.yml: valid against the Compose Specification, and the services we promise.

The schema is the Compose Specification's own (tests/data/compose-spec.json, see
tests/data/README.md). When a Docker Compose binary is on PATH, ``docker compose config``
checks the file too; no Docker engine is needed for that.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from gtx_stream.cli import build_parser
from gtx_stream.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
README = ROOT / "README.md"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"
OUR_SERVICES = ("ingester", "labeler", "aggregator", "exporter", "estimator", "label-server")
_VARIABLE = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def _interpolate(text: str) -> str:
    """``${VAR:-default}`` -> default and ``${VAR}`` -> "", as Compose does with VAR unset."""
    return _VARIABLE.sub(lambda m: m.group(2) or "", text)


def _load(interpolate: bool = True) -> dict[str, Any]:
    text = COMPOSE_FILE.read_text()
    loaded = yaml.safe_load(_interpolate(text) if interpolate else text)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture
def compose() -> dict[str, Any]:
    return _load()


def _errors(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in err.absolute_path)}: {err.message}"
        for err in validator.iter_errors(document)
    ]


@pytest.mark.parametrize("interpolate", [False, True], ids=["as-written", "interpolated"])
def test_compose_file_is_valid(validator: jsonschema.Draft7Validator, interpolate: bool) -> None:
    assert _errors(validator, _load(interpolate)) == []


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["services"]["labeler"].update(replica=2),
        lambda c: c["services"]["redis"]["healthcheck"].update(command="ping"),
        lambda c: c["services"]["aggregator"]["depends_on"]["redis"].update(
            condition="service_ready"
        ),
    ],
    ids=["unknown-service-key", "unknown-healthcheck-key", "bad-depends-on-condition"],
)
def test_schema_rejects_broken_compose_file(
    validator: jsonschema.Draft7Validator, compose: dict[str, Any], mutate: Any
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert _errors(validator, broken)


def test_services_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", *OUR_SERVICES}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in OUR_SERVICES:
        service = services[name]
        assert service["healthcheck"]["test"] == ["CMD", "gtx-stream", "status", "--check"]
        assert build_parser().parse_args(service["healthcheck"]["test"][2:]).check is True
        assert service["depends_on"] == {"redis": {"condition": "service_healthy"}}
        env = service["environment"]
        assert env["GTX_REDIS__URL"] == "redis://redis:6379/0"
        mounted = {v.split(":")[1] for v in service["volumes"]}
        assert env["GTX_CONFIG"] in mounted, f"{name}: the config file is not mounted"


def test_redis_keeps_an_append_only_file(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert redis["image"].startswith("redis:7")


def test_labelers_scale(compose: dict[str, Any]) -> None:
    labeler = compose["services"]["labeler"]
    assert int(labeler["deploy"]["replicas"]) >= 1
    # a fixed container name or a published port would make `--scale labeler=N` fail
    assert "container_name" not in labeler
    assert "ports" not in labeler


def test_services_are_restarted_after_a_failure_and_the_ingester_not_after_its_end(
    compose: dict[str, Any],
) -> None:
    """Compose has no restart policy per exit status, so a configuration error (exit 2) is
    restarted too (systemd's unit, workers/gtx-stream@.service, leaves it down). No count
    (``on-failure:N``): Docker keeps counting for the container's whole life, so the count
    would run out on real failures too, and leave the service down for good."""
    services = compose["services"]
    policies = {name: services[name]["restart"] for name in OUR_SERVICES}
    expected = {**dict.fromkeys(OUR_SERVICES, "unless-stopped"), "ingester": "on-failure"}
    assert policies == expected
    assert services["redis"]["restart"] == "unless-stopped"
    text = COMPOSE_FILE.read_text()
    assert "a configuration error's (2) too" in text  # the file says what it cannot do


def _worker(name: str) -> ModuleType:
    path = ROOT / "workers" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"gtx_worker_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_services_run_the_worker_entry_points(compose: dict[str, Any]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "COPY workers ./workers" in dockerfile and "WORKDIR /app" in dockerfile
    for name in OUR_SERVICES:
        python, script = compose["services"][name]["command"]
        assert python == "python"
        assert (ROOT / script.removeprefix("/app/")).is_file(), script


@pytest.mark.parametrize(
    ("worker", "env", "expected"),
    [
        ("ingester", {"SOURCE": "/input/a.mp4"}, {"command": "ingest", "source": ["/input/a.mp4"]}),
        ("ingester", {"SOURCE": "0"}, {"command": "ingest", "source": ["0"]}),
        ("ingester", {"SOURCE": "x", "TASKS": "/data/possent"},
         {"command": "ingest", "source": [], "tasks": "/data/possent"}),
        ("ingester", {"SOURCE": "x", "SOURCES": "/input/cams.txt"},
         {"command": "ingest", "source": [], "sources": "/input/cams.txt"}),
        ("ingester", {"SOURCE": "/input/a.mp4", "TRUTH": "/input/truth.csv", "TASKS": ""},
         {"command": "ingest", "source": ["/input/a.mp4"], "truth": "/input/truth.csv"}),
        ("ingester", {"SOURCE": "/input/a.mp4", "TRUTH": ""},
         {"command": "ingest", "source": ["/input/a.mp4"], "truth": None}),
        ("labeler", {}, {"command": "labeler", "all": True, "ids": None}),
        ("labeler", {"LABELER_IDS": "all"}, {"command": "labeler", "all": True}),
        ("labeler", {"LABELER_IDS": "a, b c"}, {"command": "labeler", "ids": ["a", "b", "c"]}),
        ("aggregator", {}, {"command": "aggregator", "consumer": None}),
        ("aggregator", {"CONSUMER": "agg-1", "LOG_LEVEL": "DEBUG"},
         {"command": "aggregator", "consumer": "agg-1", "log_level": "DEBUG"}),
        ("exporter", {}, {"command": "export", "follow": True, "out": Path("/data/dataset"),
                          "format": "folder", "check": None}),
        ("exporter", {"OUT": "/x", "FORMAT": "parquet"},
         {"command": "export", "out": Path("/x"), "format": "parquet"}),
        ("estimator", {}, {"command": "estimator", "once": False}),
        ("estimator", {"LOG_LEVEL": ""}, {"command": "estimator", "log_level": "INFO"}),
        ("labeler", {"LOG_LEVEL": ""}, {"command": "labeler", "log_level": "INFO"}),
        ("label_server", {}, {"command": "label-server", "host": "0.0.0.0", "port": None}),
        ("label_server", {"PORT": "9000"}, {"command": "label-server", "port": 9000}),
    ],
)  # fmt: skip
def test_worker_arguments(worker: str, env: dict[str, str], expected: dict[str, Any]) -> None:
    args = build_parser().parse_args(_worker(worker).argv(env))
    assert {k: getattr(args, k) for k in expected} == expected


def test_ingester_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        _worker("ingester").argv({})
    assert stopped.value.code == 2  # a configuration error: not restarted (it was 1)
    assert "set SOURCE" in capsys.readouterr().err


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("no Docker Compose binary on PATH (docker compose / docker-compose)")
    run = [*command, "--project-directory", str(ROOT), "-f", str(COMPOSE_FILE), "config", "-q"]
    done = subprocess.run(run, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period:", "stop_grace:"))
    run[run.index(str(COMPOSE_FILE))] = str(broken)
    done = subprocess.run(run, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode != 0 and "stop_grace" in done.stderr


def test_the_exporter_writes_to_a_volume_and_is_not_scaled(compose: dict[str, Any]) -> None:
    exporter = compose["services"]["exporter"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in exporter["volumes"]}
    assert mounts[exporter["environment"]["OUT"]] == "./dataset"
    assert "deploy" not in exporter, "one exporter per group: its folder is locked"


def test_config_toml_holds_where_the_compose_file_sets_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An empty GTX_ variable is read as "" and overrides config.toml: each service, run with
    its compose environment and nothing set in the shell, keeps redis.queue_url of the file."""
    config = tmp_path / "config.toml"
    config.write_text('[redis]\nqueue_url = "redis://queues:6379/0"\n')
    compose = _load(interpolate=False)  # Compose fills ${...} in each value, after parsing
    for name in OUR_SERVICES:
        env = compose["services"][name]["environment"]
        for var in [v for v in os.environ if v.startswith("GTX_")]:
            monkeypatch.delenv(var)
        for var, value in env.items():
            if value is not None:  # null: passed on from the shell only when set there
                monkeypatch.setenv(var, _interpolate(str(value)))
        monkeypatch.setenv("GTX_CONFIG", str(config))
        queue_url = load_settings().redis.queue_url.get_secret_value()
        assert queue_url == "redis://queues:6379/0", f"{name}: {env}"


def test_dot_env_reaches_every_service(compose: dict[str, Any]) -> None:
    """GTX_<SECTION>__<FIELD> "here or in .env": a .env alone only fills the file's ${...}."""
    for name in OUR_SERVICES:
        assert {"path": ".env", "required": False} in compose["services"][name]["env_file"], name


def test_replay_labelers_see_the_ingesters_input(compose: dict[str, Any]) -> None:
    """A replay labeler reads <target>/answers.csv in its own container: the crowd dataset the
    ingester opens with TASKS=/input/... must be mounted in the labeler too."""
    services = compose["services"]
    ingester = {v.split(":")[1]: v for v in services["ingester"]["volumes"]}
    labeler = {v.split(":")[1]: v for v in services["labeler"]["volumes"]}
    assert labeler["/input"] == ingester["/input"]
    assert labeler["/input"].endswith(":ro")
    assert labeler["/etc/gtx-stream/config.toml"].endswith(":ro")


def _readme_compose_variables() -> set[str]:
    section = README.read_text().split("### With docker compose", 1)[1].split("\n### ", 1)[0]
    return set(re.findall(r"^\| `(\w+)` \|", section, re.M))


def test_the_readme_table_names_every_variable_of_the_compose_file(
    compose: dict[str, Any],
) -> None:
    """Each ${VAR} of docker-compose.yml, and each variable it passes on from the shell, is a
    row of the README's table, and each row one of them (GTX_<SECTION>__<FIELD> fields aside:
    their own row covers them)."""
    field = re.compile(r"GTX_[A-Z_]+__[A-Z_]+")
    used = {m.group(1) for m in _VARIABLE.finditer(COMPOSE_FILE.read_text())}
    for service in compose["services"].values():
        used |= {k for k, v in (service.get("environment") or {}).items() if v is None}
    documented = _readme_compose_variables()
    assert {v for v in used if not field.fullmatch(v)} == documented


def _dockerignored(name: str, rules: list[str]) -> bool:
    """Whether a top-level ``name`` is left out of the build context (the last rule that
    matches wins, as Docker reads .dockerignore)."""
    ignored = False
    for rule in rules:
        negated = rule.startswith("!")
        if fnmatch.fnmatch(name, rule.removeprefix("!").rstrip("/")):
            ignored = not negated
    return ignored


def test_the_build_context_is_only_what_the_dockerfile_copies() -> None:
    """Without .dockerignore, `docker compose up --build` sends the whole folder: .venv (2 GB
    here), .git, the input videos and the dataset."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for name in " ".join(copied).split():
        assert (ROOT / name).exists(), name
        assert not _dockerignored(name, rules), f"{name} is copied but left out of the context"
    for name in (".venv", ".git", "input", "dataset", "tests", "gtx_stream.egg-info"):
        assert _dockerignored(name, rules), name
