"""`gtx-stream gold load|reset`, and what `status` says of gold and paused people."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from gtx_stream.config import GoldSettings
from gtx_stream.store.gold import GoldBook
from gtx_stream.store.keys import Keys
from tests.cli.conftest import Cli, one_line


def _folder(path: Path, n: int, truths: dict[int, int] | None = None) -> tuple[Path, Path]:
    """``n`` distinct images (PNG and JPEG) in a folder, and their truth CSV (every index)."""
    path.mkdir()
    for i in range(n):
        image = np.full((24, 32, 3), 10 * i, dtype=np.uint8)
        cv2.imwrite(str(path / f"img{i:02d}.{'png' if i % 2 else 'jpg'}"), image)
    csv = path.parent / f"{path.name}-truth.csv"
    rows = truths if truths is not None else {i: i % 2 for i in range(n)}
    csv.write_text("frame_index,truth\n" + "".join(f"{i},{t}\n" for i, t in rows.items()))
    return path, csv


def test_load_stores_each_image_once_however_often_it_is_loaded(
    cli: Cli, tmp_path: Path, redis_url: str
) -> None:
    folder, csv = _folder(tmp_path / "gold", 6)
    code, out, err = cli("gold", "load", str(folder), "--truth", str(csv))
    assert code == 0, err
    assert "gold: 6 added, 0 already loaded (6 images, 3 with truth 1); 6 gold items" in out
    assert "warning: fewer gold items than gold.qualification (10)" in err
    code, out, _ = cli("gold", "load", str(folder), "--truth", str(csv))
    assert code == 0
    assert "gold: 0 added, 6 already loaded" in out
    rb = redis.Redis.from_url(redis_url)
    keys = Keys("gtx")
    assert rb.hlen(keys.gold) == 6
    names = sorted(v.decode() for v in rb.hvals(keys.gold_files))
    assert names == [f"img{i:02d}.{'png' if i % 2 else 'jpg'}" for i in range(6)]
    for gid, truth in rb.hgetall(keys.gold).items():
        jpeg = rb.get(keys.gold_image(gid.decode()))
        assert jpeg is not None and jpeg[:2] == b"\xff\xd8"  # stored as JPEG, like frames
        name = rb.hget(keys.gold_files, gid).decode()  # type: ignore[union-attr]
        assert int(truth) == int(name[3:5]) % 2  # truth by index in name order


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no truth", r"img03.png: no truth in .*\(frame_index 3\)"),
        ("no truth for several", r"img01.png and 2 more: no truth"),
        ("truth for no image", r"frame_index 9 has no image in .*\(4 images, indexes 0 to 3\)"),
        ("bad truth", r"truth"),
        ("no folder", r"not a folder: .*missing"),
        ("empty folder", r"no images in folder"),
    ],
)
def test_load_refuses_bad_input_with_one_line(
    cli: Cli, tmp_path: Path, redis_url: str, case: str, message: str
) -> None:
    truths = {
        "no truth": {0: 1, 1: 0, 2: 1},
        "no truth for several": {0: 1},
        "truth for no image": {0: 1, 1: 0, 2: 1, 3: 0, 9: 1},
        "bad truth": {0: 1, 1: 0, 2: 7, 3: 0},
    }.get(case)
    folder, csv = _folder(tmp_path / "gold", 4, truths)
    if case == "no folder":
        folder = tmp_path / "missing"
    if case == "empty folder":
        folder = tmp_path / "empty"
        folder.mkdir()
    code, out, err = cli("gold", "load", str(folder), "--truth", str(csv))
    assert code == 2
    assert out == ""
    line = one_line(err)
    assert line.startswith("gold error: ")
    assert re.search(message, line), line
    assert redis.Redis.from_url(redis_url).dbsize() == 0  # nothing stored


def test_status_lists_gold_people_and_who_is_paused_and_why(
    cli: Cli, tmp_path: Path, redis_url: str
) -> None:
    folder, csv = _folder(tmp_path / "gold", 12)
    assert cli("gold", "load", str(folder), "--truth", str(csv))[0] == 0
    rb = redis.Redis.from_url(redis_url)
    keys = Keys("gtx")
    book = GoldBook(rb, keys, GoldSettings())
    truths = {k.decode(): int(v) for k, v in rb.hgetall(keys.gold).items()}
    for gid, truth in truths.items():
        book.answer("ann", gid, truth)  # 12 of 12
        book.answer("bo", gid, 1 - truth)  # 0 of 12: paused at qualification
    for gid, truth in list(truths.items())[:3]:
        book.answer("cy", gid, truth)  # still qualifying
    code, out, err = cli("status")
    assert code == 0, err
    lines = out.splitlines()
    assert "gold             12 items, 27 answers (assessment, not charged to the budget)" in lines
    [paused] = [line for line in lines if line.startswith("paused ")]
    assert paused.startswith("paused           bo: gold accuracy 0.083, interval [")
    assert "below the floor 0.6 after 10 gold answers" in paused
    start = next(i for i, line in enumerate(lines) if line.startswith("person "))
    rows = {line.split()[0]: line.split() for line in lines[start + 1 : start + 4]}
    assert rows["ann"][1:4] == ["12", "12", "0.929"] and rows["ann"][-1] == "qualified"
    assert rows["bo"][1:3] == ["12", "0"] and rows["bo"][-1] == "paused"
    assert rows["cy"][1:3] == ["3", "3"] and rows["cy"][-1] == "qualifying"
    # ann has answered all 12 (bo too, but bo is paused): gold measures her no more
    assert [line for line in lines if line.startswith("gold used up ")] == [
        "gold used up     ann: answered all 12 items, gold measures them no more "
        "(gtx-stream gold load adds more)"
    ]
    code, out, _ = cli("status", "--json")
    st = json.loads(out)
    assert st["gold_items"] == 12 and st["gold_answers"] == 27
    assert st["gold_used_up"] == ["ann"]
    assert {p: v["gold_left"] for p, v in st["people"].items()} == {"ann": 0, "bo": 0, "cy": 9}
    assert set(st["paused"]) == {"bo"}
    assert st["people"]["bo"]["paused"] == st["paused"]["bo"]
    assert st["people"]["cy"]["qualified"] is False
    assert "bo" not in st["labelers"] and st["labelers"]["ann"]["source"] == "gold"
    # reset: bo qualifies again from scratch
    code, out, _ = cli("gold", "reset", "bo")
    assert (code, out.strip()) == (0, "gold: bo reset")
    st = json.loads(cli("status", "--json")[1])
    assert st["paused"] == {} and "bo" not in st["people"]
    # no config here: bo is no configured person (a mistyped id would be told the same)
    assert cli("gold", "reset", "bo")[1].strip() == (
        "gold: nothing stored for bo (not a person of the config: people none)"
    )


def test_status_says_who_cannot_qualify_for_want_of_gold(
    cli: Cli, tmp_path: Path, redis_url: str
) -> None:
    folder, csv = _folder(tmp_path / "gold", 4)  # fewer than gold.qualification (10)
    assert cli("gold", "load", str(folder), "--truth", str(csv))[0] == 0
    rb = redis.Redis.from_url(redis_url)
    keys = Keys("gtx")
    book = GoldBook(rb, keys, GoldSettings())
    for gid, truth in rb.hgetall(keys.gold).items():
        book.answer("dee", gid.decode(), int(truth))
    code, out, err = cli("status")
    assert code == 0, err
    assert "gold used up     dee: answered all 4 items, not qualified, so they get no frame " \
        "(gtx-stream gold load adds more)" in out.splitlines()  # fmt: skip


def test_reset_of_an_id_that_is_no_person_says_so(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a walkthrough's typo: `gold reset alcie` said only "nothing stored for alcie"
    monkeypatch.setenv("GTX_LABELERS", json.dumps([{"id": "alice", "backend": "human"},
                                                   {"id": "m1", "accuracy": 0.8}]))  # fmt: skip
    code, out, _ = cli("gold", "reset", "alcie")
    assert (code, out.strip()) == (
        0,
        "gold: nothing stored for alcie (not a person of the config: people alice)",
    )
    assert cli("gold", "reset", "alice")[1].strip() == "gold: nothing stored for alice"
