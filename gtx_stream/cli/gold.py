"""`gtx-stream gold load|reset`: the gold set people are measured on (store/gold.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gtx_stream.cli.options import add_config_option

if TYPE_CHECKING:
    from gtx_stream.store.gold import GoldImage


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gold",
        help="load the gold frames the label server slips into people's feeds; reset a person",
        description="Gold frames measure each person's accuracy while they label.",
    )
    add_config_option(p)
    action = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    load = action.add_parser(
        "load",
        help="load a folder of images with their truth as the gold set",
        description=(
            "Load the images of DIR (in name order, as `ingest DIR` numbers them) with their "
            "truth from CSV (frame_index,truth, the truth file of ingest) into Redis. Every "
            "image needs a truth. Loading the same images again adds nothing."
        ),
    )
    load.add_argument("dir", metavar="DIR", help="folder of images")
    load.add_argument("--truth", metavar="CSV", required=True, help="frame_index,truth file")
    load.set_defaults(func=_load)

    reset = action.add_parser(
        "reset",
        help="forget a person's gold answers and lift their pause: they qualify again",
        description=(
            "Forget a person's gold answers, lift their pause and, if gold registered them, "
            "unregister them, so that their next gold answers qualify them again."
        ),
    )
    reset.add_argument("person", metavar="ID", help="labeler id of the person")
    reset.set_defaults(func=_reset)


def read_gold_folder(folder: str | Path, truth_csv: str | Path, quality: int) -> list[GoldImage]:
    """The images of ``folder`` with their truth, encoded as the ingester encodes frames (so a
    gold frame looks like any other); :class:`GoldError` when an image has no truth."""
    from gtx_stream.pipeline.ingest.images import encode_jpeg
    from gtx_stream.pipeline.ingest.sources import FolderSource, SourceError, read_truth_csv
    from gtx_stream.store.gold import GoldError, GoldImage, gold_id_of

    path = Path(folder).expanduser()
    if not path.is_dir():
        raise GoldError(f"not a folder: {path}")
    try:
        truths = read_truth_csv(truth_csv)
        src = FolderSource(path)
        src.open()
        frames = list(src.frames(lambda index, t: True))
    except SourceError as err:
        raise GoldError(str(err)) from None
    missing = [f.fields["file_name"] for f in frames if f.index not in truths]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        first = next(f for f in frames if f.index not in truths)
        raise GoldError(f"{path / missing[0]}{more}: no truth in {truth_csv} (frame_index "
                        f"{first.index})")  # fmt: skip
    extra = sorted(set(truths) - {f.index for f in frames})
    if extra:
        raise GoldError(f"{truth_csv}: frame_index {extra[0]} has no image in {path} "
                        f"({len(frames)} images, indexes 0 to {len(frames) - 1})")  # fmt: skip
    out = []
    for f in frames:
        assert f.image is not None
        out.append(GoldImage(gold_id_of(f.image.tobytes() + repr(f.image.shape).encode()),
                             f.fields["file_name"], encode_jpeg(f.image, quality),
                             truths[f.index]))  # fmt: skip
    return out


def _load(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.store.connection import connect
    from gtx_stream.store.gold import GoldError, load
    from gtx_stream.store.keys import Keys
    from gtx_stream.store.shards import layout

    settings = load_settings(args.config)
    try:
        images = read_gold_folder(args.dir, args.truth, settings.ingest.jpeg_quality)
        client = connect(settings)
        keys = layout(client, Keys(settings.redis.prefix))  # the gold set's names on a cluster
        report = load(client, keys, images)
    except GoldError as err:
        print(f"gold error: {err}", file=sys.stderr)
        return 2
    except redis.RedisError as err:
        print(f"redis error: {err}", file=sys.stderr)
        return 1
    ones = sum(img.truth for img in images)
    print(f"gold: {report.added} added, {report.kept} already loaded ({len(images)} images, "
          f"{ones} with truth 1); {report.total} gold items in {keys.gold}")  # fmt: skip
    if report.total < settings.gold.qualification:
        print(f"warning: fewer gold items than gold.qualification ({settings.gold.qualification}):"
              " no new person can qualify", file=sys.stderr)  # fmt: skip
    return 0


def _reset(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.store.connection import connect
    from gtx_stream.store.gold import GoldBook
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    try:
        book = GoldBook(connect(settings), Keys(settings.redis.prefix), settings.gold)
        found = book.reset(args.person)
    except redis.RedisError as err:
        print(f"redis error: {err}", file=sys.stderr)
        return 1
    if found:
        print(f"gold: {args.person} reset")
        return 0
    people = [lab.id for lab in settings.labelers if lab.backend == "human"]
    # a mistyped id: say so, rather than only that nothing was stored for it
    hint = ("" if args.person in people else
            f" (not a person of the config: people {', '.join(people) or 'none'})")  # fmt: skip
    print(f"gold: nothing stored for {args.person}{hint}")
    return 0
