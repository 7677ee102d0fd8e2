"""client.submit: frames opened by the ingester's rules, ids that never collide, metadata."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest
import redis

from gtx_stream.client import BudgetSpent, Client, PipelineFull
from gtx_stream.store import frame_scripts
from gtx_stream.store.keys import Keys
from gtx_stream.store.scripts import ScriptRunner
from tests.client.conftest import MakeClient


def grey(level: int) -> np.ndarray:
    return np.full((48, 64, 3), level, np.uint8)


def jpeg_of(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def test_submit_opens_a_frame_as_the_ingester_does(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    fid = client.submit(grey(200), source="line3", metadata={"part": "A-42"}, truth=1)
    assert fid == "line3-0"
    h = r.hgetall(keys.frame(fid))
    opened_at = float(h.pop("opened_at"))
    assert opened_at == pytest.approx(time.time(), abs=5)
    assert h == {
        "state": "open",
        "source": "line3",
        "source_id": "line3",
        "frame_index": "0",
        "n_labels": "0",
        "truth": "1",
        "part": "A-42",
    }
    assert r.zscore(keys.open_frames, fid) is not None
    assert [f["frame_id"] for _, f in r.xrange(keys.opened)] == [fid]  # type: ignore[union-attr]
    ttl = client.settings.ingest.frame_ttl
    assert 0 < r.ttl(keys.image(fid)) <= ttl and 0 < r.ttl(keys.frame(fid)) <= ttl
    jpeg = client.redis.get(keys.image(fid))
    assert isinstance(jpeg, bytes)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (48, 64, 3) and image.mean() == pytest.approx(200, abs=2)
    assert client.metadata(fid) == {"part": "A-42"}
    assert client.submit(grey(10), source="line3") == "line3-1"


def test_jpeg_bytes_are_stored_as_given(client: Client, keys: Keys) -> None:
    data = jpeg_of(grey(90))
    fid = client.submit(data, source="cam")
    assert client.redis.get(keys.image(fid)) == data


@pytest.mark.parametrize(
    ("image", "error", "message"),
    [
        (cv2.imencode(".png", grey(5))[1].tobytes(), ValueError, "these bytes are no JPEG"),
        (jpeg_of(grey(5))[:-100], ValueError, "truncated JPEG"),
        (grey(5).astype(np.float32), ValueError, "uint8 image"),
        ("a string", TypeError, "numpy image or JPEG bytes"),
    ],
    ids=["png-bytes", "cut-jpeg", "float-image", "str"],
)
def test_what_is_not_an_image_or_a_whole_jpeg_is_refused(
    client: Client, r: redis.Redis, image: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        client.submit(image, source="cam")  # type: ignore[arg-type]
    assert r.dbsize() == 0


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"state": "final"}, "a field of the pipeline's own"),
        ({"label": "1"}, "a field of the pipeline's own"),
        ({"file_name": "x.png"}, "a field of the pipeline's own"),
        ({"truth": "1"}, "a field of the pipeline's own"),
        ({"with space": "x"}, "use a letter"),
        ({"n": 3}, "values are strings"),
        ({"big": "x" * 20_000}, "at most 16384"),
    ],
)
def test_bad_metadata_is_refused_and_nothing_is_written(
    client: Client, r: redis.Redis, metadata: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.submit(grey(1), source="cam", metadata=metadata)
    assert r.dbsize() == 0


@pytest.mark.parametrize("truth", [True, 1.0, np.int64(1)], ids=["bool", "float", "numpy"])
def test_a_truth_of_another_type_is_stored_as_simulated_labelers_read_it(
    client: Client, r: redis.Redis, keys: Keys, truth: object
) -> None:
    fid = client.submit(grey(1), source="cam", truth=truth)  # type: ignore[arg-type]
    assert r.hget(keys.frame(fid), "truth") == "1"  # not "True": int("True") fails


def test_a_bad_source_name_or_truth_is_refused(client: Client, r: redis.Redis) -> None:
    with pytest.raises(ValueError, match="source 'a/b'"):
        client.submit(grey(1), source="a/b")
    with pytest.raises(ValueError, match="truth must be 0 or 1"):
        client.submit(grey(1), source="cam", truth=2)
    assert r.dbsize() == 0


def test_processes_submitting_to_one_source_never_collide(
    make_client: MakeClient, r: redis.Redis, keys: Keys
) -> None:
    """Each thread holds a client (a connection) of its own, as processes would."""
    clients = [make_client(max_open_frames=1000) for _ in range(4)]
    ids: list[list[str]] = [[] for _ in clients]

    def run(i: int) -> None:
        ids[i] = [clients[i].submit(grey(i), source="shared") for _ in range(25)]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [fid for per_thread in ids for fid in per_thread]
    assert len(every) == len(set(every)) == 100
    assert sorted(int(fid.rsplit("-", 1)[1]) for fid in every) == list(range(100))
    assert r.hget(keys.stats, "frames_opened") == "100"
    assert r.hget(keys.source("shared"), "last_index") == "99"


def test_a_restarted_client_never_reuses_an_index(
    make_client: MakeClient, r: redis.Redis, keys: Keys
) -> None:
    first = make_client()
    assert first.submit(grey(1), source="cam") == "cam-0"
    first.close()
    r.delete(keys.frame("cam-0"), keys.image("cam-0"))  # finalised long ago, its keys expired
    assert make_client().submit(grey(1), source="cam") == "cam-1"


def test_indexes_start_above_frames_an_ingester_opened_under_the_source_id(
    client: Client, r: redis.Redis, keys: Keys
) -> None:
    r.hset(keys.source("cam"), "last_index", "41")
    assert client.submit(grey(1), source="cam") == "cam-42"


def test_reserved_frames_open_out_of_order_and_the_mark_only_rises(
    r: redis.Redis, keys: Keys
) -> None:
    """Two submitters race: the later index may open first; the earlier one still opens."""
    run = ScriptRunner(r)
    a, b = (run.run_one(frame_scripts.reserve_index(keys, "cam")) for _ in range(2))
    assert (a, b) == (0, 1)

    def open_(index: int, reserved: bool) -> str:
        return run.run_one(frame_scripts.open_frame(
            keys, frame_id=f"cam-{index}", frame_index=index, source="cam", source_id="cam",
            opened_at=time.time(), ttl=60, max_open_frames=100, reserve_per_frame=0,
            jpeg=b"j", reserved=reserved,
        ))  # fmt: skip

    assert open_(b, True) == "opened"
    assert open_(a, True) == "opened"
    assert r.hget(keys.source("cam"), "last_index") == "1"
    assert open_(a, True) == "duplicate"  # the frame exists
    r.delete(keys.frame("cam-0"))
    assert open_(a, False) == "duplicate"  # the ingester's rule: at or below the mark


def test_a_full_pipeline_blocks_then_raises_after_the_timeout(
    make_client: MakeClient, r: redis.Redis, keys: Keys
) -> None:
    client = make_client(max_open_frames=2)
    client.submit(grey(1), source="cam")
    client.submit(grey(2), source="cam")
    t0 = time.monotonic()
    with pytest.raises(PipelineFull, match="stayed full for 0.3 s"):
        client.submit(grey(3), source="cam", timeout=0.3)
    assert 0.3 <= time.monotonic() - t0 < 1.5
    assert r.zcard(keys.open_frames) == 2 and r.xlen(keys.opened) == 2
    with pytest.raises(TimeoutError):  # PipelineFull is a TimeoutError
        client.submit(grey(3), source="cam", timeout=0)


def test_a_blocked_submit_opens_once_a_frame_is_finalised(
    make_client: MakeClient, r: redis.Redis, keys: Keys
) -> None:
    client = make_client(max_open_frames=1)
    first = client.submit(grey(1), source="cam")
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(client.submit(grey(2), source="cam")))
    waiter.start()
    time.sleep(0.3)
    assert not got, "opened while full"
    r.zrem(keys.open_frames, first)  # what finalise.lua does
    waiter.join(5)
    assert got == ["cam-1"]


def test_a_spent_budget_raises(client: Client, r: redis.Redis, keys: Keys) -> None:
    r.hset(keys.budget, mapping={"limit": 5, "spent": 5})
    with pytest.raises(BudgetSpent, match="budget is spent"):
        client.submit(grey(1), source="cam")
    assert r.zcard(keys.open_frames) == 0


def test_the_budget_reserve_holds_submit_as_it_holds_the_ingester(
    make_client: MakeClient, r: redis.Redis, keys: Keys
) -> None:
    """kappa labels are kept for each open frame: 5 left, kappa 3: one frame opens, not two."""
    client = make_client(kappa=3)
    r.hset(keys.budget, mapping={"limit": 5, "spent": 0})
    client.submit(grey(1), source="cam")
    with pytest.raises(PipelineFull):
        client.submit(grey(2), source="cam", timeout=0.1)
