"""`gtx-stream status` in text: it names its key prefix and never prints ``None``."""

from __future__ import annotations

import json
from typing import Any

import redis

from gtx_stream.cli.status import format_status
from gtx_stream.store.keys import Keys
from tests.cli.conftest import Gtx


def test_status_of_an_empty_pipeline_names_its_prefix_and_no_none(gtx: Gtx, redis_url: str) -> None:
    done = gtx("status", GTX_REDIS__URL=redis_url, GTX_REDIS__PREFIX="line-7")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "prefix           line-7" in lines
    assert "frames open      0" in lines  # no oldest open frame to speak of
    assert "None" not in done.stdout


def test_status_json_names_its_prefix(gtx: Gtx, redis_url: str) -> None:
    done = gtx("status", "--json", GTX_REDIS__URL=redis_url, GTX_REDIS__PREFIX="line-7")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prefix"] == "line-7"


def test_status_with_an_open_frame_and_a_labeler_without_accuracy(
    gtx: Gtx, redis_url: str, r: redis.Redis
) -> None:
    keys = Keys("p")
    r.zadd(keys.open_frames, {"f-1": 1.0})
    r.hset(keys.labelers, "bob", json.dumps({"source": "config"}))  # no accuracy yet
    done = gtx("status", GTX_REDIS__URL=redis_url, GTX_REDIS__PREFIX="p")
    assert done.returncode == 0, done.stderr
    assert "frames open      1  (oldest " in done.stdout
    [bob] = [line.split() for line in done.stdout.splitlines() if line.startswith("bob")]
    assert bob[2] == "-"  # accuracy
    assert "None" not in done.stdout


def _status(**changes: Any) -> dict[str, Any]:
    st: dict[str, Any] = {
        "redis": "redis://127.0.0.1:6379/0", "prefix": "gtx", "frames_open": 0,
        "oldest_open_age_s": None, "frames_finalised": 0, "dead_letters": 0,
        "labels_applied": 0, "budget_spent": 0, "budget_limit": None, "budget_left": None,
        "labelers": {},
    }  # fmt: skip
    return {**st, **changes}


def test_format_status_says_unlimited_and_no_labelers_instead_of_none() -> None:
    text = format_status(_status())
    assert "None" not in text
    assert "0 applied, 0 bought, unlimited" in text
    assert "labelers         none registered under gtx" in text


def test_format_status_with_a_budget_and_labelers() -> None:
    lab = {"accuracy": None, "live": False, "labels": 0, "queue": 0, "outstanding": 0}
    text = format_status(
        _status(frames_open=2, oldest_open_age_s=3.5, budget_limit=10, budget_left=4,
                budget_spent=6, labelers={"a": {**lab, "accuracy": 0.9, "live": True}, "b": lab})
    )  # fmt: skip
    assert "frames open      2  (oldest 3.5 s)" in text
    assert "6 bought, 4 left" in text
    assert "None" not in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[-2:]}
    assert rows["a"][1:3] == ["yes", "0.900"] and rows["b"][1:3] == ["no", "-"]


def test_format_status_says_what_keeps_the_images() -> None:
    """Frames finalised and no exporter group: nothing keeps their JPEGs past the TTL, which
    the text says; with an exporter it shows the exporter's figures instead; before any frame
    is finalised it says neither."""
    lost = format_status(_status(frames_finalised=3), "exporter", 86400)
    assert ("images           not exported (no exporter group 'exporter' on the final "
            "stream): each JPEG expires 86400 s after its frame opened (ingest.frame_ttl)")  \
        in lost  # fmt: skip
    exported = format_status(_status(
        frames_finalised=3, images_exported=3, images_missing=0, images_filtered=0,
        exporter={"group": "exporter", "lag": 0, "pending": 0},
    ))  # fmt: skip
    assert "images           3 exported" in exported and "not exported" not in exported
    assert "images" not in format_status(_status())
