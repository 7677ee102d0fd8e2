"""``gtx-stream demo --people``: you label in the browser while machine labelers work.

The demo's pipeline (Redis, a synthetic video, simulated labelers, an aggregator) plus the
label server and one person, ``you`` (backend ``human``). The link it prints logs you in; the
ingester starts once your page is open, and at most a few frames are open at a time, so the
frames asked of you wait for your answer (or for your lease, 120 s, to run out: then a machine
is asked). It ends when every frame is final (or on Ctrl-C), prints who labeled what, and
exports the dataset like the plain demo.

``you`` is registered with a configured accuracy (0.9), so you label from the first frame; a
real person starts with gold frames instead (``gtx-stream gold load``, README).
"""

from __future__ import annotations

import secrets
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

from gtx_stream.config import Settings
from gtx_stream.core.records import FinalRecord, decode_fields
from gtx_stream.ops.demo import DemoOptions, export_dataset, labeler_accuracies, write_config
from gtx_stream.ops.status import pipeline_status
from gtx_stream.ops.supervisor import Supervisor
from gtx_stream.store import people
from gtx_stream.store.connection import connect
from gtx_stream.store.keys import Keys

PERSON = "you"
PERSON_ACCURACY = 0.9
OPEN_AT_ONCE = 3  # frames open at a time: the pipeline keeps pace with a person


def _port(preferred: int) -> int:
    """``preferred`` when it is free, else any free port."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise RuntimeError("no free port for the label server")


def run_people_demo(
    settings: Settings, opts: DemoOptions, url: str, prefix: str, workdir: Path, say: Any
) -> dict[str, Any]:
    """Run until every frame is final; ``say`` prints a line for the user."""
    from gtx_stream.ops.synthetic import write_synthetic_video, write_truth_csv

    video = workdir / "demo.avi"
    write_truth_csv(workdir / "truth.csv", write_synthetic_video(video, opts.frames, opts.seed))
    machines = labeler_accuracies(opts.labelers, opts.alpha_range, opts.seed)
    port = _port(settings.label_server.port)
    public = f"http://127.0.0.1:{port}"
    admin_password = secrets.token_urlsafe(9)
    config = workdir / "demo.toml"
    write_config(
        config,
        {
            "redis": {"url": url, "prefix": prefix},
            "aggregator": {
                "method": opts.method,
                "tau": opts.tau,
                "kappa": opts.kappa,
                "budget": opts.budget,
                "seed": opts.seed,
                "max_open_frames": OPEN_AT_ONCE,
            },
            "label_server": {
                "host": "127.0.0.1",
                "port": port,
                "public_url": public,
                "question": "Is the square inside the marked region?",
                "admin_password": admin_password,
            },
        },  # fmt: skip
        [
            *(
                {"id": lab, "backend": "simulated", "accuracy": a, "seed": opts.seed}
                for lab, a in machines.items()
            ),
            {"id": PERSON, "backend": "human", "accuracy": PERSON_ACCURACY},
        ],  # fmt: skip
    )
    keys = Keys(prefix)
    client = connect(settings, url, decode_responses=True)
    sup = Supervisor(config=config, log_dir=workdir / "logs")
    try:
        sup.start("aggregator", "aggregator")
        sup.start("labelers", "labeler", "--all")
        sup.start("label-server", "label-server")
        _until(lambda: _serving(public), sup, "the label server", 60)
        token = people.create_invite(client, keys, PERSON, settings.label_server.invite_ttl_seconds)
        say(f"\nopen this link to label (once; it logs you in as {PERSON!r}):")
        say(f"  {public}/login/{token}")
        say(f"dashboard: {public}/admin/  (password {admin_password})")
        say("the ingester starts once your page is open; Ctrl-C stops the demo\n")
        _until(lambda: client.zscore(keys.live, PERSON), sup, "your page", opts.timeout)
        sup.start("ingester", "ingest", str(video), "--truth", str(workdir / "truth.csv"),
                  "--source-id", "demo")  # fmt: skip
        last = ""
        while sup.services["ingester"].running or pipeline_status(client, keys)["frames_open"]:
            st = pipeline_status(client, keys)
            yours = st["labelers"].get(PERSON, {}).get("labels", 0)
            line = (f"frames finalised {st['frames_finalised']} / opened {st['frames_opened']}, "
                    f"labels {st['budget_spent']}, yours {yours}")  # fmt: skip
            if line != last:
                say("  " + line)
                last = line
            sup.raise_if_failed()
            time.sleep(1.0)
    finally:
        sup.stop_all()
    entries = cast(list[tuple[str, dict[str, str]]], client.xrange(keys.final))
    records = [FinalRecord.from_fields(decode_fields(f)) for _, f in entries]
    client.close()
    by = Counter(lab for rec in records for lab in rec.labelers)
    return {
        "frames_finalised": len(records),
        "labels_by_you": by.get(PERSON, 0),
        "labels_by_machines": sum(n for lab, n in by.items() if lab != PERSON),
        "dataset": export_dataset(settings, url, keys, workdir / "dataset"),
    }


def _serving(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/healthz", timeout=1.0) as res:
            return bool(res.status == 200)
    except OSError:
        return False


def _until(predicate: Any, sup: Supervisor, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        sup.raise_if_failed()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def print_people_summary(s: dict[str, Any]) -> None:
    print(f"\nframes finalised   {s['frames_finalised']}")
    print(f"labels             {s['labels_by_you']} by you, {s['labels_by_machines']} by machines")
    ds = s["dataset"]
    print(f"dataset            {ds['exported']} images ({ds['missing']} missing, "
          f"{ds['filtered']} filtered) in {ds['path']}")  # fmt: skip
