"""client.final_labels: typed records through a consumer group, acknowledged once processed."""

from __future__ import annotations

import time

import pytest
import redis

import gtx_stream.client
from gtx_stream.client import Client
from gtx_stream.core.records import FinalRecord
from gtx_stream.store.keys import Keys


def add_finals(r: redis.Redis, keys: Keys, ids: range) -> list[str]:
    """Final records as finalise.lua writes them; returns their entry ids."""
    out = []
    for i in ids:
        rec = FinalRecord(
            frame_id=f"cam-{i}", label=i % 2, p1=0.995 if i % 2 else 0.005, confidence=0.995,
            reason="confident", method="gtx", labelers=["a", "b"], labels=[i % 2] * 2,
            accuracies=[0.9, 0.9], finalised_at=time.time(), source="cam", frame_index=i,
        )  # fmt: skip
        out.append(str(r.xadd(keys.final, rec.to_fields())))  # type: ignore[arg-type]
    return out


def pending(r: redis.Redis, keys: Keys, group: str) -> int:
    return int(r.xpending(keys.final, group)["pending"])


def test_every_record_comes_typed_once_and_is_acknowledged(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    ids = add_finals(r, keys, range(5))
    got = list(client.final_labels("app", "app-1", idle_seconds=0.3))
    assert [rec.frame_id for rec in got] == [f"cam-{i}" for i in range(5)]
    assert [rec.entry_id for rec in got] == ids
    assert [rec.label for rec in got] == [0, 1, 0, 1, 0] and got[1].labels == [1, 1]
    assert pending(r, keys, "app") == 0
    # the group remembers: later records only
    add_finals(r, keys, range(5, 7))
    assert [rec.frame_id for rec in client.final_labels("app", "app-1", idle_seconds=0.3)] == [
        "cam-5", "cam-6",
    ]  # fmt: skip
    # another group reads everything the stream holds
    assert len(list(client.final_labels("audit", "audit-1", idle_seconds=0.3))) == 7


def test_the_record_in_hand_when_the_loop_breaks_comes_again(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    add_finals(r, keys, range(5))
    for rec in client.final_labels("app", "app-1"):
        if rec.frame_id == "cam-2":
            break  # say the body raised while storing cam-2
    # cam-0 and cam-1 were processed (the next one was asked for): acknowledged
    assert pending(r, keys, "app") == 3
    again = [rec.frame_id for rec in client.final_labels("app", "app-1", idle_seconds=0.3)]
    assert again == ["cam-2", "cam-3", "cam-4"]
    assert pending(r, keys, "app") == 0


def test_what_a_dead_consumer_left_pending_is_claimed(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    add_finals(r, keys, range(4))
    dead = client.final_labels("app", "dead-1")
    assert [next(dead).frame_id for _ in range(2)] == ["cam-0", "cam-1"]
    # the process died: nothing more runs in it (no close, no acknowledgement)
    assert pending(r, keys, "app") == 4
    time.sleep(0.3)
    got = [rec.frame_id for rec in client.final_labels(
        "app", "alive-1", claim_idle_seconds=0.2, idle_seconds=0.5,
    )]  # fmt: skip
    assert sorted(got) == ["cam-0", "cam-1", "cam-2", "cam-3"]
    assert pending(r, keys, "app") == 0


def test_a_malformed_entry_is_skipped_and_acknowledged(
    client: Client, r: redis.Redis, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    add_finals(r, keys, range(1))
    bad = r.xadd(keys.final, {"frame_id": "x", "label": "1", "reason": "ok", "labels": "[oops"})
    add_finals(r, keys, range(1, 2))
    got = [rec.frame_id for rec in client.final_labels("app", "app-1", idle_seconds=0.3)]
    assert got == ["cam-0", "cam-1"]
    assert f"final entry {bad} skipped" in caplog.text
    assert pending(r, keys, "app") == 0


def test_an_entry_trimmed_while_pending_is_acknowledged(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    ids = add_finals(r, keys, range(3))
    first = client.final_labels("app", "app-1")
    next(first)  # all three read, none acknowledged (the consumer crashed)
    r.xdel(keys.final, ids[1])  # retention trimmed it meanwhile
    got = [rec.frame_id for rec in client.final_labels("app", "app-1", idle_seconds=0.3)]
    assert got == ["cam-0", "cam-2"]
    assert pending(r, keys, "app") == 0


def test_the_records_are_the_final_record_the_client_package_exports(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    add_finals(r, keys, range(1))
    (rec,) = client.final_labels("app", "app-1", idle_seconds=0.3)
    assert isinstance(rec, gtx_stream.client.FinalRecord)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("", "app-1"), {}, "the group name must be a non-empty string"),
        (("app", " "), {}, "the consumer name must be a non-empty string"),
        (("exporter", "app-1"), {}, "group 'exporter' is the exporter's"),
        (("app", "app-1"), {"batch_size": 0}, "batch_size must be an int >= 1, got 0"),
        (("app", "app-1"), {"claim_idle_seconds": -1}, "claim_idle_seconds must be >= 0"),
    ],
    ids=["empty-group", "blank-consumer", "exporter-group", "batch-0", "negative-claim"],
)
def test_bad_arguments_are_refused_before_any_read(
    client: Client,
    r: redis.Redis,
    keys: Keys,
    args: tuple[str, str],
    kwargs: dict[str, float],
    message: str,
) -> None:
    add_finals(r, keys, range(1))
    with pytest.raises(ValueError, match=message):
        client.final_labels(*args, idle_seconds=0.3, **kwargs)  # type: ignore[arg-type]
    assert r.xinfo_groups(keys.final) == []  # no group was created
