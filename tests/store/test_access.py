"""Access: ACL users per service, AUTH, TLS, no pickle, no secret in output (issue 4, item 4).

Each test starts a redis-server of its own: with the ACL file of docs/access.md (read from that
page, so the page and the test cannot drift apart), with ``requirepass``, or with TLS on a
certificate made here by the ``openssl`` command.

Elsewhere: the job payload is JSON (tests/pipeline/test_labeler.py::test_job_payload_is_json), a job
naming another function is refused (test_worker_runs_nothing_but_label_frame), labels from
unregistered labelers are dead-lettered (tests/test_aggregator.py::test_bad_labels_are_dead_
lettered), a config error never shows redis.url's password (tests/test_bad_input.py).
"""

from __future__ import annotations

import json
import pathlib
import pickle
import re
import shutil
import subprocess
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from gtx_stream.cli import main
from gtx_stream.config import Settings
from gtx_stream.ops.demo import write_config
from gtx_stream.ops.embedded import EmbeddedRedis, EmbeddedRedisError, free_port
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv
from gtx_stream.pipeline.label.requests import LABEL_FRAME, enqueue_request
from gtx_stream.pipeline.label.worker import run_labeler_worker
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import script_source

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "access.md"
KEYS = Keys("gtx")
SERVICES = ("ingester", "labeler", "aggregator")


def acl_lines() -> list[str]:
    """The ACL file shown in docs/access.md."""
    found = re.search(r"```text\n(user default .*?)```", DOC.read_text(), re.S)
    assert found, "docs/access.md has no ```text block of ACL users"
    return [line for line in found.group(1).splitlines() if line.strip()]


def passwords() -> dict[str, str]:
    out = {}
    for line in acl_lines():
        name, pw = re.match(r"user (\S+) on >(\S+) ", line).groups()  # type: ignore[union-attr]
        out[name] = pw
    return out


# --- servers -----------------------------------------------------------------------------------


@dataclass
class Server:
    embedded: EmbeddedRedis
    port: int  # where the services connect: the TLS port when tls
    tls: Path | None = None  # folder with ca.crt

    def url(self, user: str) -> str:
        pw = passwords()[user]
        if self.tls is None:
            return f"redis://{user}:{pw}@127.0.0.1:{self.port}/0"
        tls = self.tls
        query = f"ssl_ca_certs={tls / 'ca.crt'}&ssl_certfile={tls / 'client.crt'}"
        return (
            f"rediss://{user}:{pw}@127.0.0.1:{self.port}/0?{query}&ssl_keyfile={tls / 'client.key'}"
        )

    def client(self, user: str, **kwargs: Any) -> redis.Redis:
        return redis.Redis.from_url(self.url(user), **kwargs)

    def admin(self) -> redis.Redis:
        pw = passwords()["default"]
        return redis.Redis(port=self.embedded.port, password=pw, decode_responses=True)


def make_certs(folder: Path) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl command."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS: no openssl command to make a certificate")
    folder.mkdir()
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=gtx-stream test CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
         "-subj", "/CN=gtx-stream service"],
        ["x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "client.crt", "-days", "2"],
    ]  # fmt: skip
    for step in steps:
        subprocess.run([openssl, *step], cwd=folder, check=True, capture_output=True)
    return folder


def start_server(tmp_path: Path, tls: bool, extra: list[str] | None = None) -> Server:
    acl = tmp_path / "users.acl"
    acl.write_text("\n".join(acl_lines()) + "\n")
    args = ["--aclfile", str(acl), *(extra or [])]
    certs = None
    tls_port = 0
    if tls:
        certs = make_certs(tmp_path / "tls")
        tls_port = free_port()
        # clients must show a certificate of the CA too (mutual TLS)
        args += ["--tls-port", str(tls_port), "--tls-auth-clients", "yes",
                 "--tls-cert-file", str(certs / "server.crt"),
                 "--tls-key-file", str(certs / "server.key"),
                 "--tls-ca-cert-file", str(certs / "ca.crt")]  # fmt: skip
    server = EmbeddedRedis(data_dir=tmp_path, extra_args=args)
    try:
        server.start()
    except EmbeddedRedisError as err:
        if tls and "tls" in str(err).lower():
            pytest.skip(f"TLS: this redis-server cannot serve TLS ({str(err)[:120]})")
        raise
    return Server(server, tls_port if tls else server.port, certs)


@pytest.fixture(params=["plain", "tls"])
def acl_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, tls=request.param == "tls")
    yield server
    server.embedded.stop()


# --- the pipeline with one ACL user per service ---------------------------------------------

N_FRAMES = 12
LABELERS = [
    *({"id": f"sim-{i}", "backend": "simulated", "accuracy": a, "seed": 2}
      for i, a in enumerate((0.9, 0.85, 0.8))),
    # always fails: RQ's failed-job path runs under the labeler's ACL too
    {"id": "broken", "backend": "python", "target": "tests.labeler_fixtures:explode",
     "accuracy": 0.8},
]  # fmt: skip


def _wait(condition: Any, what: str, sups: Any = (), timeout: float = 120) -> None:
    """Wait for ``condition``; fail at once, with its log, when a service of ``sups`` failed."""
    deadline = time.monotonic() + timeout
    while not condition():
        for sup in sups:
            for svc in sup.failed():
                raise AssertionError(f"{svc.name} exited {svc.returncode}:\n{svc.tail(40)}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.redis
def test_pipeline_runs_with_one_acl_user_per_service(
    acl_server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if acl_server.tls is not None:  # the services' port speaks TLS only, to certified clients
        no_retry = {"socket_timeout": 2, "retry": Retry(NoBackoff(), 0)}
        with pytest.raises(redis.ConnectionError):
            redis.Redis(port=acl_server.port, **no_retry).ping()  # type: ignore[arg-type]
        ca_only = acl_server.url("gtx-reader").split("&ssl_certfile")[0]
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(ca_only, **no_retry).ping()
        assert acl_server.client("gtx-reader").ping()
    video = tmp_path / "line.avi"
    write_truth_csv(tmp_path / "truth.csv", write_synthetic_video(video, N_FRAMES, seed=4))
    admin = acl_server.admin()
    agg = {"tau": 0.95, "kappa": 3, "lease_seconds": 1.0, "sweep_seconds": 0.1}
    configs = {}
    for user in ("ingester", "labeler", "aggregator", "reader", "consumer"):
        configs[user] = tmp_path / f"{user}.toml"
        write_config(configs[user], {"redis": {"url": acl_server.url(f"gtx-{user}")},
                                     "aggregator": agg}, LABELERS)  # fmt: skip
    sups = {
        name: Supervisor(configs[name], tmp_path / "logs", env={"PYTHONPATH": str(ROOT)})
        for name in SERVICES
    }

    # a labeler may not store its own accuracy: before the aggregator did, it exits 1, one line
    first = Supervisor(configs["labeler"], tmp_path / "logs", env={"PYTHONPATH": str(ROOT)})
    early = first.start("labeler-early", "labeler", "--all")
    assert early.process is not None and early.process.wait(60) == 1
    assert early.tail().splitlines()[-1].startswith("redis error: ")
    assert "no permissions" in early.tail()
    assert admin.exists(KEYS.labelers) == 0
    admin.acl_log_reset()

    try:
        sups["aggregator"].start("aggregator", "--log-level", "DEBUG", "aggregator")
        _wait(lambda: admin.hlen(KEYS.labelers) == len(LABELERS), "accuracies", sups.values())
        sups["labeler"].start("labeler", "--log-level", "DEBUG", "labeler", "--all")
        sups["ingester"].start("ingester", "--log-level", "DEBUG", "ingest", str(video),
                               "--truth", str(tmp_path / "truth.csv"))  # fmt: skip
        _wait(lambda: admin.xlen(KEYS.final) == N_FRAMES and admin.zcard(KEYS.open_frames) == 0,
              "every frame finalised", sups.values())  # fmt: skip

        # a label from an unregistered labeler, written with the labeler's credentials
        some_frame = cast(Any, admin.xrange(KEYS.final, count=1))[0][1]["frame_id"]
        acl_server.client("gtx-labeler").xadd(
            KEYS.labels, {"frame_id": some_frame, "labeler": "rogue", "label": "1"}
        )
        _wait(lambda: admin.xlen(KEYS.dead) == 1, "the rogue label's dead letter")
        assert "unknown labeler" in cast(Any, admin.xrange(KEYS.dead))[0][1]["reason"]

        # nothing was refused while the pipeline ran
        assert admin.acl_log() == []

        # the labeler's credentials cannot finalise a frame nor change an accuracy
        labeler = acl_server.client("gtx-labeler")
        with pytest.raises(redis.exceptions.NoPermissionError):
            labeler.xadd(KEYS.final, {"frame_id": some_frame, "label": "0"})
        with pytest.raises(redis.exceptions.NoPermissionError):
            labeler.hset(KEYS.labelers, "sim-2", json.dumps({"accuracy": 1.0}))
        assert admin.xlen(KEYS.final) == N_FRAMES
        assert json.loads(admin.hget(KEYS.labelers, "sim-2") or "{}")["accuracy"] == 0.8

        # each service may run its own health check; the consumer may not run status at all
        outputs = []
        for user in ("ingester", "labeler", "aggregator", "reader"):
            assert main(["status", "--check", "--config", str(configs[user])]) == 0, user
            assert main(["status", "--config", str(configs[user])]) == 0, user
            outputs.append(capsys.readouterr())
        assert main(["tail", "--config", str(configs["reader"])]) == 0
        assert main(["tail", "--config", str(configs["consumer"])]) == 0
        out = capsys.readouterr()
        assert len(out.out.splitlines()) == 2 * N_FRAMES
        outputs.append(out)
        assert main(["status", "--config", str(configs["consumer"])]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("redis error: ") and "\n" not in err and "no permissions" in err
    finally:
        codes = {name: sup.stop_all() for name, sup in sups.items()}
    assert codes == {"ingester": {"ingester": 0}, "labeler": {"labeler": 0},
                     "aggregator": {"aggregator": 0}}  # fmt: skip

    records = [f for _, f in cast(Any, admin.xrange(KEYS.final))]
    assert len({rec["frame_id"] for rec in records}) == N_FRAMES
    for rec in records:
        assert "broken" not in json.loads(rec["labelers"])
    raw_admin = redis.Redis(port=acl_server.embedded.port, password=passwords()["default"])
    assert FailedJobRegistry("gtx.labeler.broken", connection=raw_admin).count >= 1

    # no password in any log or output
    logs = [p.read_text() for p in (tmp_path / "logs").iterdir()]
    assert any("DEBUG" in text for text in logs)
    shown = logs + [o.out + o.err for o in outputs]
    for pw in passwords().values():
        assert not any(pw in text for text in shown), pw
    assert any("gtx-reader:***@127.0.0.1" in o.out for o in outputs)


# --- what each user must not do ------------------------------------------------------------

# finalise.lua on frame "f" decided on 0 labels (grace 0, a record of no fields)
FINALISE_KEYS = [KEYS.open_frames, KEYS.final, KEYS.stats, KEYS.frame("f"), KEYS.image("f"),
                 KEYS.frame_labels("f"), KEYS.frame_requests("f")]  # fmt: skip
REFUSED: list[tuple[str, list[Any]]] = [
    ("gtx-labeler", ["XADD", KEYS.final, "*", "frame_id", "f", "label", "1"]),
    ("gtx-labeler", ["HSET", KEYS.labelers, "sim-0", '{"accuracy": 1.0}']),
    ("gtx-labeler", ["HSET", KEYS.budget, "limit", "1000000"]),
    ("gtx-labeler", ["DEL", KEYS.labels]),
    ("gtx-labeler", ["XTRIM", KEYS.labels, "MAXLEN", "0"]),
    ("gtx-labeler", ["XADD", KEYS.opened, "*", "frame_id", "f"]),
    ("gtx-labeler", ["XRANGE", KEYS.labels, "-", "+"]),
    ("gtx-labeler", ["HSET", KEYS.frame("f"), "state", "final"]),
    ("gtx-labeler", ["EVALSHA", "FINALISE", len(FINALISE_KEYS), *FINALISE_KEYS, 0, 0, "f", 0]),
    ("gtx-ingester", ["HSET", KEYS.budget, "spent", "0"]),
    ("gtx-ingester", ["XADD", KEYS.final, "*", "frame_id", "f"]),
    ("gtx-ingester", ["HSET", KEYS.labelers, "sim-0", '{"accuracy": 1.0}']),
    ("gtx-ingester", ["EVALSHA", "FINALISE", len(FINALISE_KEYS), *FINALISE_KEYS, 0, 0, "f", 0]),
    ("gtx-ingester", ["XADD", KEYS.labels, "*", "frame_id", "f"]),
    ("gtx-aggregator", ["DEL", KEYS.final]),
    ("gtx-aggregator", ["XGROUP", "DESTROY", KEYS.final, "exporter"]),
    ("gtx-aggregator", ["XGROUP", "DELCONSUMER", KEYS.final, "exporter", "e1"]),
    ("gtx-aggregator", ["FLUSHDB"]),
    ("gtx-consumer", ["XADD", KEYS.final, "*", "frame_id", "f"]),
    ("gtx-consumer", ["XRANGE", KEYS.labels, "-", "+"]),
    ("gtx-consumer", ["HGETALL", KEYS.labelers]),
    ("gtx-reader", ["XADD", KEYS.final, "*", "frame_id", "f"]),
    ("gtx-reader", ["HSET", KEYS.stats, "frames_finalised", "0"]),
    ("gtx-reader", ["GET", KEYS.image("f")]),
]
ALLOWED: list[tuple[str, list[Any]]] = [
    ("gtx-labeler", ["XADD", KEYS.labels, "*", "frame_id", "f", "labeler", "x", "label", "1"]),
    ("gtx-labeler", ["HGETALL", KEYS.frame("f")]),
    ("gtx-labeler", ["HMGET", KEYS.labelers, "sim-0"]),
    ("gtx-ingester", ["HGET", KEYS.budget, "limit"]),
    ("gtx-aggregator", ["EVALSHA", "FINALISE", len(FINALISE_KEYS), *FINALISE_KEYS, 0, 0, "f", 0]),
    ("gtx-aggregator", ["XTRIM", KEYS.labels, "MINID", "0"]),
    ("gtx-consumer", ["XRANGE", KEYS.final, "-", "+"]),
    ("gtx-reader", ["XLEN", KEYS.final]),
]


@pytest.fixture(scope="module")
def plain_acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("acl"), tls=False)
    yield server
    server.embedded.stop()


def _run(server: Server, user: str, command: list[Any]) -> Any:
    sha = server.admin().script_load(script_source("finalise"))
    args = [sha if a == "FINALISE" else a for a in command]
    return server.client(user).execute_command(*args)


@pytest.mark.redis
@pytest.mark.parametrize(("user", "command"), REFUSED, ids=[f"{u}-{c[0]}" for u, c in REFUSED])
def test_each_user_is_refused_what_it_must_not_do(
    plain_acl_server: Server, user: str, command: list[Any]
) -> None:
    admin = plain_acl_server.admin()
    before = {k: admin.type(k) for k in admin.keys("*")}
    with pytest.raises(redis.exceptions.NoPermissionError):
        _run(plain_acl_server, user, command)
    assert {k: admin.type(k) for k in admin.keys("*")} == before


@pytest.mark.redis
@pytest.mark.parametrize(("user", "command"), ALLOWED, ids=[f"{u}-{c[0]}" for u, c in ALLOWED])
def test_each_user_may_do_its_work(plain_acl_server: Server, user: str, command: list[Any]) -> None:
    _run(plain_acl_server, user, command)  # raises on a refusal


@pytest.mark.redis
def test_retention_runs_with_the_aggregators_user(plain_acl_server: Server) -> None:
    """Every command of retention's scripts: pending entries (XPENDING), the length and age
    rules on final (XRANGE, TIME), the removal of a dead consumer (XGROUP DELCONSUMER)."""
    from gtx_stream.config import RetentionSettings
    from gtx_stream.pipeline.aggregate.retention import Retention
    from gtx_stream.store.scripts import ScriptRunner

    admin = plain_acl_server.admin()
    admin.acl_log_reset()
    for stream in (KEYS.labels, KEYS.opened, KEYS.final):
        for i in range(4):
            admin.xadd(stream, {"frame_id": f"f{i}"})
        admin.xgroup_create(stream, "aggregator", id="0")
        admin.xreadgroup("aggregator", "dead", {stream: ">"}, count=2)  # 2 pending, 2 unread
    admin.xgroup_createconsumer(KEYS.labels, "aggregator", "idle")
    client = plain_acl_server.client("gtx-aggregator")
    settings = RetentionSettings(final_seconds=0.001, final_maxlen=1, clock_skew_seconds=0)
    retention = Retention(client, KEYS, ScriptRunner(client), settings, group="aggregator",
                          consumer="a1", claim_idle_seconds=0.001)  # fmt: skip
    try:
        time.sleep(0.01)
        report = retention.apply()
        assert report.held_by == dict.fromkeys((KEYS.labels, KEYS.opened, KEYS.final), "aggregator")
        assert report.removed == {KEYS.labels: ["idle"]}
        assert admin.acl_log() == []
    finally:
        admin.delete(KEYS.labels, KEYS.opened, KEYS.final)


# --- a password-only server ------------------------------------------------------------------


@pytest.mark.redis
def test_password_only_server_via_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "p@ss:w/rd#1"  # needs percent-encoding in a URL
    server = EmbeddedRedis(data_dir=tmp_path, extra_args=["--requirepass", password]).start()
    try:
        url = f"redis://:{quote(password, safe='')}@127.0.0.1:{server.port}/0"
        config = tmp_path / "c.toml"
        config.write_text(f'[redis]\nurl = "{url}"\n')
        video = tmp_path / "v.avi"
        write_synthetic_video(video, 3, seed=1)
        assert main(["ingest", str(video), "--config", str(config)]) == 0
        assert main(["status", "--config", str(config)]) == 0
        assert main(["status", "--json", "--config", str(config)]) == 0
        assert main(["status", "--check", "--config", str(config)]) == 0
        shown = capsys.readouterr()
        assert f"redis            redis://:***@127.0.0.1:{server.port}/0" in shown.out
        assert '"frames_open": 3' in shown.out
        client = redis.Redis(port=server.port, password=password)
        assert client.zcard(KEYS.open_frames) == 3

        texts = [shown.out, shown.err]
        for bad in (f"redis://:wrong@127.0.0.1:{server.port}/0",
                    f"redis://127.0.0.1:{server.port}/0"):  # fmt: skip
            config.write_text(f'[redis]\nurl = "{bad}"\n')
            assert main(["status", "--config", str(config)]) == 2
            err = capsys.readouterr().err.strip()
            assert "authentication failed" in err and "\n" not in err, err
            texts.append(err)
        for text in texts:
            assert password not in text and quote(password, safe="") not in text
    finally:
        server.cleanup()


# --- no pickle -----------------------------------------------------------------------------


class Touch:
    """Unpickling this creates ``path``: the proof that something called pickle.loads."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_no_source_file_uses_pickle() -> None:
    for path in (ROOT / "gtx_stream").rglob("*.py"):
        assert "pickle" not in path.read_text(), path
    label = "\n".join(p.read_text() for p in (ROOT / "gtx_stream/pipeline/label").glob("*.py"))
    assert "serializer=JSONSerializer" in label
    for line in label.splitlines():
        if re.search(r"\b(Queue|Worker)\(", line) and "class " not in line:
            assert "serializer=JSONSerializer" in line or line.rstrip().endswith("("), line


def test_a_pickled_job_or_label_is_never_unpickled(
    redis_url: str, r: redis.Redis, tmp_path: Path
) -> None:
    raw = redis.Redis.from_url(redis_url)
    in_args, in_meta, in_label = (tmp_path / n for n in ("args", "meta", "label"))
    # a job written with RQ's default (pickle) serializer, booby-trapped in its data and meta
    Queue(KEYS.queue("alice"), connection=raw).enqueue(
        LABEL_FRAME, Touch(in_args), "alice", "r1", "gtx", job_id="pickled",
        meta={"x": Touch(in_meta)},
    )  # fmt: skip
    data, meta = raw.hmget("rq:job:pickled", ["data", "meta"])
    pickle.loads(zlib.decompress(cast(bytes, data)))
    pickle.loads(cast(bytes, meta))
    assert in_args.exists() and in_meta.exists()  # the traps are live
    in_args.unlink()
    in_meta.unlink()
    # then a good request after it
    r.hset(KEYS.frame("cam-1"), mapping={"state": "open", "truth": "1"})
    enqueue_request(r, KEYS, "alice", "cam-1", "r2", 30)

    settings = Settings.model_validate(
        {"redis": {"url": redis_url},
         "labelers": [{"id": "alice", "backend": "simulated", "accuracy": 0.7}]}
    )  # fmt: skip
    assert run_labeler_worker(settings, ["alice"], burst=True) == 0
    assert not in_args.exists() and not in_meta.exists()
    failed = FailedJobRegistry(KEYS.queue("alice"), connection=raw, serializer=JSONSerializer)
    assert failed.get_job_ids() == ["pickled"]
    assert [f["frame_id"] for _, f in cast(Any, r.xrange(KEYS.labels))] == ["cam-1"]

    # a pickle on the labels stream is a malformed label, not an object
    from gtx_stream.config import AggregatorSettings
    from gtx_stream.pipeline.aggregate.aggregator import Aggregator

    agg = Aggregator(raw, KEYS, AggregatorSettings(), consumer="a1", enqueue=lambda *a: None)
    agg.setup()
    trap = pickle.dumps(Touch(in_label))
    trap_id = raw.xadd(KEYS.labels, {"frame_id": trap, "labeler": trap, "label": trap})
    agg.step(block_ms=1)
    assert not in_label.exists()
    dead = {f["entry_id"]: f for _, f in cast(Any, r.xrange(KEYS.dead))}
    assert dead[cast(bytes, trap_id).decode()]["reason"].startswith("label must be 0 or 1, got ")


# --- secrets in the URL's query -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://u:pw-1@h:1/0", "redis://u:***@h:1/0"),
        ("redis://h:1/0?password=pw-1", "redis://h:1/0?password=***"),
        ("redis://u@h:1/0?db=0&password=pw-1", "redis://u@h:1/0?db=0&password=***"),
        ("rediss://u:pw-1@h:1/0?ssl_ca_certs=/ca.crt&ssl_password=pw-2",
         "rediss://u:***@h:1/0?ssl_ca_certs=/ca.crt&ssl_password=***"),
        ("redis://h:1/0", "redis://h:1/0"),
        # a Redis Cluster URL of several nodes (README: GTX_REDIS__URL=redis://a:7000,b:7000)
        ("redis://u:pw-1@h1:7000,h2:7000,h3:7000", "redis://u:***@h1:7000,h2:7000,h3:7000"),
        ("redis://u:pw-1@h1:1,redis://u:pw-2@h2:2/0", "redis://u:***@h1:1,redis://u:***@h2:2/0"),
        ("redis://h1:1,h2:2/0?password=pw-1", "redis://h1:1,h2:2/0?password=***"),
        ("redis://u:pw-1@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
        ("redis://u:p,w-1@h:1/0", "redis://u:***@h:1/0"),
    ],
)  # fmt: skip
def test_redacted_hides_every_password(url: str, shown: str) -> None:
    from gtx_stream.store.connection import redacted

    assert redacted(url) == shown


@pytest.mark.redis
def test_status_hides_a_password_given_in_the_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    password = "query-secret-9"
    server = EmbeddedRedis(data_dir=tmp_path, extra_args=["--requirepass", password]).start()
    try:
        config = tmp_path / "c.toml"
        config.write_text(
            f'[redis]\nurl = "redis://127.0.0.1:{server.port}/0?password={password}"\n'
        )
        assert main(["status", "--config", str(config)]) == 0
        assert main(["status", "--json", "--config", str(config)]) == 0
        out = capsys.readouterr()
        assert "password=***" in out.out
        assert password not in out.out + out.err
    finally:
        server.cleanup()


@pytest.mark.redis
def test_the_estimator_runs_with_its_user(plain_acl_server: Server) -> None:
    """A fit reads the final stream and rewrites gtx:labelers, and nothing more is needed."""
    from gtx_stream.config import AggregatorSettings, EstimatorSettings
    from gtx_stream.core.records import FinalRecord
    from gtx_stream.pipeline.estimate import Estimator
    from gtx_stream.store.params import LabelerAccuracy, get_labelers, store

    admin = plain_acl_server.admin()
    admin.acl_log_reset()
    store(admin, KEYS, {lab: LabelerAccuracy.given(0.8, "config") for lab in ("a", "b", "c")})
    for i in range(40):
        labels = [i % 2, i % 2, (i // 3) % 2]
        rec = FinalRecord(frame_id=f"f{i}", label=i % 2, p1=0.5, confidence=0.5, reason="kappa",
                          method="gtx", labelers=["a", "b", "c"], labels=labels,
                          accuracies=[0.8] * 3, finalised_at=time.time())  # fmt: skip
        admin.xadd(KEYS.final, rec.to_fields())  # type: ignore[arg-type]
    client = plain_acl_server.client("gtx-estimator")
    try:
        est = Estimator(client, KEYS, EstimatorSettings(min_labels=10), AggregatorSettings())
        report = est.fit_once()
        assert report is not None and sorted(report.written) == ["a", "b", "c"]
        assert {rec.source for rec in get_labelers(admin, KEYS).values()} == {"em"}
        assert admin.acl_log() == []
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.xadd(KEYS.final, {"frame_id": "x"})
    finally:
        admin.delete(KEYS.final, KEYS.labelers)


@pytest.mark.redis
def test_uncertainty_sampling_runs_with_the_aggregators_user(plain_acl_server: Server) -> None:
    """Strategy 2's keys and commands are in the aggregator's ACL line."""
    from gtx_stream.config import AggregatorSettings
    from gtx_stream.pipeline.aggregate.aggregator import Aggregator
    from tests.aggregator_harness import Capture, answer, open_frame, register

    admin = plain_acl_server.admin()
    admin.flushdb()
    admin.acl_log_reset()
    acc = {"a": 0.9, "b": 0.8, "c": 0.7}
    register(admin, KEYS, acc)
    for i in range(6):
        open_frame(admin, KEYS, i, i % 2)
    client = plain_acl_server.client("gtx-aggregator", decode_responses=True)
    cap = Capture()
    settings = AggregatorSettings(strategy="uncertainty", budget=12, kappa=3, sweep_seconds=0.05)
    agg = Aggregator(client, KEYS, settings, consumer="a1", enqueue=cap)
    agg.setup()
    try:
        for _ in range(500):
            agg.step(block_ms=1)
            answer(admin, KEYS, cap, acc)
            if admin.zcard(KEYS.open_frames) == 0:
                break
        assert admin.zcard(KEYS.open_frames) == 0 and admin.xlen(KEYS.final) == 6
        assert admin.acl_log() == []
    finally:
        admin.flushdb()


@pytest.mark.redis
@pytest.mark.parametrize("user", ["gtx-ingester", "gtx-client"])
def test_a_bound_per_source_runs_with_the_openers_users(
    plain_acl_server: Server, user: str
) -> None:
    """open_frame.lua's per-source set: its ZRANGE, ZSCORE and ZREM when it prunes."""
    from gtx_stream.pipeline.ingest.ingester import open_frame

    admin = plain_acl_server.admin()
    admin.flushdb()
    admin.acl_log_reset()
    client = plain_acl_server.client(user, decode_responses=True)

    def one(i: int) -> str:
        return open_frame(client, KEYS, source="cam://x", source_id="x", frame_index=i,
                          jpeg=b"j", ttl=60, max_open_frames=64, reserve_per_frame=0,
                          max_open_per_source=2)  # fmt: skip

    try:
        assert [one(i) for i in range(3)] == ["opened", "opened", "full"]
        admin.zrem(KEYS.open_frames, "x-0")  # as finalise.lua does
        assert one(2) == "opened"
        assert admin.acl_log() == []
    finally:
        admin.flushdb()
