"""Configuration: config.toml, ``--config PATH``, ``GTX_*`` variables, and one-line errors.

Also keeps README.md's configuration table equal to the code: ``python -m tests.ops.test_config``
prints the table.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr
from pydantic_core import PydanticUndefined

from gtx_stream.cli import main
from gtx_stream.config import (
    AggregatorSettings,
    ConfigError,
    EstimatorSettings,
    ExportSettings,
    GoldSettings,
    IngestSettings,
    LabelerSettings,
    LabelServerSettings,
    RedisSettings,
    RetentionSettings,
    Settings,
    load_settings,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIG_FILE = ROOT / "config.toml"
SECTIONS: dict[str, type[BaseModel]] = {
    "redis": RedisSettings,
    "aggregator": AggregatorSettings,
    "ingest": IngestSettings,
    "export": ExportSettings,
    "retention": RetentionSettings,
    "label_server": LabelServerSettings,
    "gold": GoldSettings,
    "estimator": EstimatorSettings,
}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No GTX_* variable of the caller's shell leaks into these tests."""
    import os

    for name in list(os.environ):
        if name.startswith("GTX_"):
            monkeypatch.delenv(name)
    yield


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- the shipped config.toml ----------------------------------------------------------------


def test_config_file_loads_and_equals_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from_file = load_settings(CONFIG_FILE)
    monkeypatch.chdir(ROOT)
    assert load_settings() == from_file  # ./config.toml is the default file
    assert from_file.model_dump() == Settings().model_dump()
    assert from_file.redis.url.get_secret_value() == ""
    assert from_file.labelers == []


def test_config_file_lists_every_field_with_its_default() -> None:
    written = tomllib.loads(CONFIG_FILE.read_text())
    assert set(written) == set(SECTIONS)
    for section, model in SECTIONS.items():
        defaults = {name: _plain(f.default) for name, f in model.model_fields.items()}
        assert written[section] == defaults, section


def _labeler_examples() -> list[str]:
    """The commented ``[[labelers]]`` examples of config.toml, uncommented."""
    text = CONFIG_FILE.read_text()
    blocks = re.findall(r"^# \[\[labelers\]\]\n(?:^# \w+ = .*\n)+", text, flags=re.MULTILINE)
    return [re.sub(r"^# ", "", b, flags=re.MULTILINE) for b in blocks]


def test_config_file_examples_of_every_backend_are_valid(tmp_path: Path) -> None:
    examples = _labeler_examples()
    settings = load_settings(_write(tmp_path / "c.toml", "\n".join(examples)))
    assert [lab.backend for lab in settings.labelers] == [
        "simulated",
        "replay",
        "python",
        "http",
        "human",
    ]
    used = set().union(*(lab.model_fields_set for lab in settings.labelers))
    assert used == set(LabelerSettings.model_fields)  # every field is shown somewhere


# --- precedence: file < --config < environment ----------------------------------------------


def test_config_path_is_read(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "line3.toml",
        '[redis]\nprefix = "line3"\n[aggregator]\ntau = 0.95\nbudget = 1000\n'
        '[[labelers]]\nid = "alice"\naccuracy = 0.9\n',
    )
    s = load_settings(path)
    assert (s.redis.prefix, s.aggregator.tau, s.aggregator.budget) == ("line3", 0.95, 1000)
    assert s.aggregator.kappa == 5  # the rest keeps its default
    assert [(lab.id, lab.backend, lab.accuracy) for lab in s.labelers] == [
        ("alice", "simulated", 0.9)
    ]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "c.toml", "[aggregator]\ntau = 0.9\nkappa = 3\n")
    monkeypatch.setenv("GTX_AGGREGATOR__TAU", "0.95")
    monkeypatch.setenv("GTX_REDIS__URL", "rediss://gtx-agg:s3cret@redis.example:6380/2")
    monkeypatch.setenv("GTX_INGEST__SKIP_STILL", "true")
    s = load_settings(path)
    assert s.aggregator.tau == 0.95
    assert s.aggregator.kappa == 3
    assert s.ingest.skip_still is True
    assert s.redis.url.get_secret_value() == "rediss://gtx-agg:s3cret@redis.example:6380/2"
    assert "s3cret" not in repr(s)


def test_environment_names_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GTX_CONFIG", str(_write(tmp_path / "c.toml", "[aggregator]\nkappa = 7\n")))
    monkeypatch.chdir(tmp_path)
    assert load_settings().aggregator.kappa == 7


def test_no_config_file_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings().model_dump() == Settings().model_dump()


# --- errors: one line that names the field --------------------------------------------------


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[aggregator]\ntau = 1.5\n", "aggregator.tau"),
        ("[aggregator]\ntau = 0.5\n", "aggregator.tau"),
        ("[aggregator]\nkappa = 0\n", "aggregator.kappa"),
        ("[aggregator]\nbudget = -1\n", "aggregator.budget"),
        ("[aggregator]\nmethod = \"vote\"\n", "aggregator.method"),
        ("[aggregator]\nmodel = \"three_coin\"\n", "aggregator.model"),
        ("[aggregator]\nmethod = \"mv\"\nmodel = \"two_coin\"\n", "aggregator"),
        ("[[labelers]]\nid = \"a\"\naccuracy = 0.9\nsensitivity = 1.5\nspecificity = 0.9\n",
         "labelers.0.sensitivity"),
        ("[[labelers]]\nid = \"a\"\naccuracy = 0.9\nsensitivity = 0.8\n", "labelers.0"),
        ("[redis]\nprefix = \"gtx:prod\"\n", "redis.prefix"),
        ("[redis]\nprefix = \"\"\n", "redis.prefix"),
        ("[ingest]\njpeg_quality = 101\n", "ingest.jpeg_quality"),
        ("[[labelers]]\nid = \"a\"\naccuracy = 1.2\n", "labelers.0.accuracy"),
        ("[[labelers]]\nid = \"a\"\nbackend = \"mturk\"\n", "labelers.0.backend"),
        ("[[labelers]]\naccuracy = 0.9\n", "labelers.0.id"),
        ("[aggregator]\ntaus = 0.9\n", "aggregator.taus"),
        ("[labeler]\nid = \"a\"\n", "labeler"),
    ],
    ids=["tau-1.5", "tau-0.5", "kappa-0", "negative-budget", "bad-method", "bad-model",
         "two-coin-mv", "sensitivity-1.5", "sensitivity-alone", "prefix-colon",
         "empty-prefix", "jpeg-quality", "accuracy-1.2", "bad-backend", "labeler-without-id",
         "unknown-key", "unknown-section"],
)  # fmt: skip
def test_bad_values_are_one_line_naming_the_field(tmp_path: Path, toml: str, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path / "bad.toml", toml))
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"config error: {field}: ")


def test_unknown_key_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^config error: aggregator\.taus: unknown key$"):
        load_settings(_write(tmp_path / "bad.toml", "[aggregator]\ntaus = 0.9\n"))


def test_repeated_labeler_ids_are_refused(tmp_path: Path) -> None:
    toml = '[[labelers]]\nid = "a"\naccuracy = 0.9\n[[labelers]]\nid = "a"\naccuracy = 0.8\n'
    with pytest.raises(ConfigError, match="repeated") as err:
        load_settings(_write(tmp_path / "bad.toml", toml))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("GTX_AGGREGATOR__TAU", "1.5", "aggregator.tau"),
        ("GTX_AGGREGATOR__KAPPA", "0", "aggregator.kappa"),
        ("GTX_AGGREGATOR__BUDGET", "-5", "aggregator.budget"),
        ("GTX_AGGREGATOR__KAPPA", "five", "aggregator.kappa"),
        ("GTX_AGGREGATOR__TAUS", "0.9", "aggregator.taus"),
    ],
)
def test_bad_environment_values_name_the_field(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, field: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"config error: {field}: ")


@pytest.mark.parametrize(
    ("name", "value", "starts", "ends"),
    [
        ("GTX_AGGREGATOR__TAU", "1.5", "aggregator.tau: ", "(in GTX_AGGREGATOR__TAU)"),
        ("GTX_AGGREGATOR", '{"tau": 1.5}', "aggregator.tau: ", "(in GTX_AGGREGATOR)"),
        ("GTX_AGGREGATOR", "tau=1.5", "aggregator: GTX_AGGREGATOR must be a JSON object (", ")"),
        ("GTX_REDIS", "{url: x}", "redis: GTX_REDIS must be a JSON object (", ")"),
        ("GTX_LABELERS", "a,b", "labelers: GTX_LABELERS must be a JSON list (", ")"),
        ("GTX_LABELERS", "{}", "labelers: Input should be a valid list", " (in GTX_LABELERS)"),
        ("GTX_LABELERS", '[{"id": "a", "accuracy": 2}]', "labelers.0.accuracy: ",
         "(in GTX_LABELERS)"),
        ("GTX_LABELERS", "[7]", "labelers.0: Input should be a valid dictionary (got 7)",
         " (in GTX_LABELERS)"),
        ("GTX_EXPORT__CLASS_NAMES", "no,yes",
         "export.class_names: GTX_EXPORT__CLASS_NAMES must be a JSON list (", ")"),
        ("GTX_LABELERS", '[{"id": "a", "acuracy": 0.9}]', "labelers.0.acuracy: unknown key",
         "(in GTX_LABELERS) [+1 more]"),
    ],
    ids=["nested-variable", "section-json", "section-not-json", "redis-not-json",
         "labelers-not-json", "labelers-object", "labeler-value", "labeler-number",
         "section-list-not-json", "a-typo-before-the-key-it-hides"],
)  # fmt: skip
def test_a_bad_environment_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, starts: str, ends: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    message = str(err.value)
    assert message.startswith(f"config error: {starts}") and message.endswith(ends), message
    assert "\n" not in message and "Settings" not in message


def test_a_bad_file_value_names_no_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path / "bad.toml", "[aggregator]\ntau = 1.5\n"))
    assert "GTX_" not in str(err.value)


def test_toml_syntax_error_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(_write(tmp_path / "bad.toml", "[aggregator\ntau = 0.9\n"))
    assert "\n" not in str(err.value) and "bad.toml" in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"^config error: file not found: .*nope\.toml$"):
        load_settings(missing)


# --- the command line -----------------------------------------------------------------------


def _free_port() -> int:
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_cli_bad_config_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "bad.toml", "[aggregator]\nkappa = 0\n")
    assert main(["status", "--config", str(bad)]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith("config error: aggregator.kappa: ")
    assert main(["status", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "file not found" in _one_line_error(capsys.readouterr().err)


def test_cli_status_with_unreachable_redis(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://gtx:s3cret@127.0.0.1:{_free_port()}/0"
    path = _write(tmp_path / "c.toml", f'[redis]\nurl = "{url}"\nsocket_timeout = 2.0\n')
    for check in ([], ["--check"]):
        assert main(["status", "--config", str(path), *check]) != 0
        out = capsys.readouterr()
        line = _one_line_error(out.err)
        assert "unreachable" in line and "127.0.0.1" in line
        assert "s3cret" not in out.err + out.out


def test_status_with_unreachable_redis_as_a_process(tmp_path: Path) -> None:
    env = {"GTX_REDIS__URL": f"redis://127.0.0.1:{_free_port()}/0", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "gtx_stream.cli", "status"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "unreachable" in _one_line_error(done.stderr)
    assert done.stdout == ""


# --- README.md's configuration table --------------------------------------------------------

MEANING = {
    "redis.url": "redis:// or rediss:// (TLS) URL with ACL user and password; empty: the demo "
    "starts an embedded Redis, the services need a URL",
    "redis.queue_url": "standalone Redis of the label requests (RQ queues and jobs; RQ does "
    "not run on Redis Cluster); empty: they live on redis.url",
    "redis.cluster": "the state and streams on a Redis Cluster (redis.url names a node; "
    "label requests need redis.queue_url)",
    "redis.wait_replicas": "on a Redis Cluster, replicas each script round trip waits for "
    "(WAIT); 0: none",
    "redis.prefix": "prefix of every key and stream; one per pipeline",
    "redis.socket_timeout": "seconds to wait for Redis to connect or answer",
    "aggregator.method": "`gtx`, or the baselines `mv`, `wmv`, `sv`",
    "aggregator.strategy": "`threshold`: ask each frame until its confidence reaches tau or it "
    "has kappa labels (strategy 1); `uncertainty`: one label per frame, then always the most "
    "uncertain open frame, until the budget is spent (strategy 2; needs a budget)",
    "aggregator.uncertainty_inflight": "strategy `uncertainty`: requests after the first labels "
    "outstanding at once over all frames; 1 gives the offline order exactly",
    "estimator.every_seconds": "`gtx-stream estimator` refits labeler parameters by EM this often",
    "estimator.every_labels": "also refit once this many new labels are final; 0: by time only",
    "estimator.window_labels": "EM fits on at most this many of the latest final labels",
    "estimator.min_labels": "no fit on fewer final labels than this",
    "estimator.prior_strength": "strength, in labels, of EM's cohort-pooled prior per parameter",
    "ingest.max_open_per_source": "open frames of one source at most, so that one bursting "
    "source cannot starve the others; 0: only `aggregator.max_open_frames` bounds it",
    "aggregator.model": "labeler model of `gtx`: `one_coin` (an accuracy per labeler) or "
    "`two_coin` (a sensitivity and a specificity; a labeler without them weighs with its "
    "accuracy for both)",
    "aggregator.tau": "finalise once the posterior confidence reaches tau (0.5 < tau < 1)",
    "aggregator.kappa": "at most kappa labels per frame",
    "aggregator.prior": "class prior P(y = 1)",
    "aggregator.budget": "labels that may be bought in all (requests issued); 0: unlimited",
    "aggregator.max_open_frames": "backpressure: no frame is opened while this many are open",
    "aggregator.max_inflight": "outstanding label requests per frame",
    "aggregator.lease_seconds": "time a labeler has to answer before another one is asked",
    "aggregator.dispatch": "`random`, `least_loaded` or `best` (highest current estimated "
    "accuracy first) choice among eligible labelers",
    "aggregator.budget_per_source": "labels one source may buy at most, so that one camera "
    "cannot spend the others' share of `budget`; a source that has spent it stops being read "
    "and its open frames end as `budget`; 0: no share of its own",
    "aggregator.labeler_slots": "requests one labeler holds at once (at least its `batch`); "
    "when set, requests wait in Redis, not in the labelers' queues, and each active source gets "
    "an equal share of the slots, so a bursting source cannot delay the others; 0: no cap",
    "aggregator.batch_size": "labels and opened frames read per XREADGROUP",
    "aggregator.block_ms": "milliseconds XREADGROUP blocks when nothing arrives",
    "aggregator.claim_idle_seconds": "reclaim a dead aggregator's pending entries after this",
    "aggregator.sweep_seconds": "re-check open frames (expired leases, stalls) this often",
    "aggregator.unsent_grace_seconds": "a sweep sends a label request granted this long ago "
    "and never enqueued (its aggregator stopped, or the queue Redis refused it, in between); a "
    "step that stalls longer and goes on sends a second copy, whose label still counts once",
    "aggregator.stall_max_seconds": "longest delay before a stalled frame (nobody can be asked) "
    "is decided again; a change of the labelers or the budget wakes it at once",
    "aggregator.live_seconds": "a labeler is live if a worker serving it beat within this",
    "aggregator.stall_seconds": "`status --check` fails when frames are open and nothing "
    "progressed for this long",
    "aggregator.seed": "seeds the random dispatch order",
    "aggregator.backoff_after_failures": "failed requests in a row after which a labeler is "
    "not asked for a while (backed off)",
    "aggregator.backoff_first_seconds": "first backoff; each further failure in a row doubles it",
    "aggregator.backoff_max_seconds": "longest backoff",
    "aggregator.shards": "shards the frames are split into, each owned by one aggregator at a "
    "time (more aggregators scale out); fixed for the life of a pipeline",
    "aggregator.shard_lease_seconds": "an aggregator renews the shards it owns within this, "
    "else another one takes them over",
    "ingest.fps": "target sampling rate (frames per second); 0: every frame",
    "ingest.every": "keep every n-th frame",
    "ingest.max_frames": "stop after this many sampled frames; 0: no limit",
    "ingest.skip_still": "skip frames that barely differ from the last kept one",
    "ingest.still_threshold": "mean absolute pixel difference below which a frame is still",
    "ingest.jpeg_quality": "JPEG quality of stored frames (1 to 100)",
    "ingest.frame_ttl": "seconds a frame and its JPEG are kept in Redis",
    "ingest.reconnect_max_seconds": "longest wait between reopening a dropped camera or stream",
    "ingest.redis_outage_seconds": "how long to keep retrying a frame while Redis is unreachable",
    "export.group": "consumer group of the exporter on the final stream; while it exists, "
    "a finalised frame's JPEG is deleted only once the exporter has it on disk",
    "export.out": "dataset folder of `gtx-stream export` (or `--out DIR`)",
    "export.class_names": 'folder names of label 0 and label 1, e.g. `["no", "yes"]`',
    "export.block_frames": "frames are split by blocks of this many consecutive source frames",
    "export.val_fraction": "fraction of blocks that go to `val`",
    "export.test_fraction": "fraction of blocks that go to `test`",
    "export.min_confidence": "frames below this confidence are left out (listed as filtered)",
    "export.reasons": "finalisation reasons whose frames are kept",
    "export.batch_size": "final-stream entries read per XREADGROUP",
    "retention.enabled": "the aggregator trims streams and expires frame keys",
    "retention.every_seconds": "how often the aggregator applies retention",
    "retention.final_seconds": "keep final-stream entries this long (never past the "
    "exporter's position); 0: forever",
    "retention.final_maxlen": "and keep at most this many; 0: no limit",
    "retention.frame_grace_seconds": "a finalised frame's own keys expire this long after "
    "finalisation",
    "retention.clock_skew_seconds": "margin for ingesters' clocks against Redis's when "
    "trimming `labels` and `opened`",
    "label_server.host": "address `gtx-stream label-server` listens on (`--host`)",
    "label_server.port": "its port (`--port`)",
    "label_server.public_url": "the address people reach it by; invite links start with it",
    "label_server.question": "the question shown above each frame on the labeling page",
    "label_server.undo_seconds": "the page holds an answer this long (Undo) before sending it",
    "label_server.prefetch": "requests held for a person beyond the one on screen (preloaded)",
    "label_server.invite_ttl_seconds": "seconds an invite link stays valid (it works once)",
    "label_server.session_ttl_seconds": "seconds a login lasts",
    "label_server.secure_cookies": "send the session cookie over HTTPS only",
    "label_server.heartbeat_seconds": "the page's heartbeat, which keeps its person live "
    "(below `aggregator.live_seconds`)",
    "label_server.admin_password": "password of the `/admin` dashboard; empty: it is closed",
    "gold.rate": "share of a qualified person's frames that are gold frames",
    "gold.qualification": "gold answers a new person gives (and gets only gold) before their "
    "labels count",
    "gold.floor": "a person whose accuracy interval lies below this (its upper bound) is paused",
    "gold.prior_a": "Beta(a, b) prior of a person's accuracy: a (pseudo right answers)",
    "gold.prior_b": "and b (pseudo wrong answers)",
    "gold.level": "credible level of a person's accuracy interval",
    "labelers[].id": "labeler id (letters, digits, `_ . : @ -`), unique",
    "labelers[].backend": "`simulated`, `replay`, `python`, `http` or `human` (a person on "
    "the label server)",
    "labelers[].accuracy": "accuracy alpha in [0, 1], registered in Redis; none: load or "
    "assess it (`gtx-stream labelers`)",
    "labelers[].target": "replay: dataset folder; python: `module:function`; http: URL",
    "labelers[].timeout": "seconds a `python` or `http` labeler may take",
    "labelers[].seed": "seed of a `simulated` labeler's draws",
    "labelers[].lease_seconds": "seconds it has to answer a request; none: 120 for `human`, "
    "`aggregator.lease_seconds` for the others",
    "labelers[].sensitivity": "two-coin P(label 1 given y = 1) in [0, 1], registered with the "
    "accuracy; give both or neither",
    "labelers[].specificity": "two-coin P(label 0 given y = 0) in [0, 1]",
    "labelers[].batch": "frames a worker answers in one backend call (`python`: "
    "lists, `http`: one JSON POST), 1 to 256; `human`: 1",
}


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if hasattr(value, "value"):  # enums
        return value.value
    return value


def _toml(value: Any) -> str:
    value = _plain(value)
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    return f"`{value!r}`"


def config_table() -> str:
    """README.md's configuration table, built from gtx_stream/config.py."""
    rows = ["| field | environment variable | default | meaning |", "|---|---|---|---|"]
    for section, model in SECTIONS.items():
        for name, field in model.model_fields.items():
            key = f"{section}.{name}"
            env = f"`GTX_{section.upper()}__{name.upper()}`"
            rows.append(f"| `{key}` | {env} | {_toml(field.default)} | {MEANING[key]} |")
    for name, field in LabelerSettings.model_fields.items():
        key = f"labelers[].{name}"
        rows.append(f"| `{key}` | `GTX_LABELERS` (JSON list) | {_toml(field.default)} "
                    f"| {MEANING[key]} |")  # fmt: skip
    return "\n".join(rows)


def test_every_field_has_a_meaning() -> None:
    fields = {f"{s}.{n}" for s, m in SECTIONS.items() for n in m.model_fields}
    fields |= {f"labelers[].{n}" for n in LabelerSettings.model_fields}
    assert fields == set(MEANING)


def test_readme_configuration_table_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    assert config_table() in readme, "README.md is stale: python -m tests.ops.test_config"


def test_labelers_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    labelers = '[{"id": "a", "accuracy": 0.8}, {"id": "b", "backend": "python", "target": "m:f"}]'
    monkeypatch.setenv("GTX_LABELERS", labelers)
    s = load_settings()
    assert [(lab.id, lab.accuracy) for lab in s.labelers] == [("a", 0.8), ("b", None)]


if __name__ == "__main__":
    print(config_table())
