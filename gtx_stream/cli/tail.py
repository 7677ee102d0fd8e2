"""`gtx-stream tail`: print finalised labels from `<prefix>:final` as they come."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

from gtx_stream.cli.options import add_config_option, non_negative_int
from gtx_stream.core.records import FinalRecord, RecordError, decode_fields, text


def register(sub: Any) -> None:
    p = sub.add_parser(
        "tail",
        help="print finalised labels, one line per frame (--follow: as they come)",
        description="Print the frames on the final stream (<prefix>:final), oldest first.",
    )
    add_config_option(p)
    p.add_argument("--follow", "-f", action="store_true", help="wait for new labels")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--from", dest="start", default="0", metavar="ID",
                   help="stream id to start after (default: the beginning)")  # fmt: skip
    p.add_argument("--count", type=non_negative_int, default=0, metavar="N",
                   help="stop after N frames (default 0: no limit)")  # fmt: skip
    p.set_defaults(func=_run)


def _line(rec: FinalRecord) -> str:
    return (
        f"{rec.frame_id}  label={rec.label}  confidence={rec.confidence:.4f}  "
        f"labels={rec.n_labels}  reason={rec.reason}"
    )


def _run(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.store.connection import connect, not_on_cluster
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    not_on_cluster(settings, "gtx-stream tail")
    client = connect(settings)
    stream = Keys(settings.redis.prefix).final
    last, shown = args.start, 0
    try:
        while True:
            resp = client.xread({stream: last}, count=500, block=1000 if args.follow else None)
            if not resp:
                if args.follow:
                    continue
                return 0
            for entry_id, fields in cast(list[Any], resp)[0][1]:
                last = text(entry_id)
                try:
                    rec = FinalRecord.from_fields(decode_fields(fields), entry_id=last)
                except RecordError as err:
                    # only finalise.lua writes this stream; say so and go on rather than stop
                    print(f"gtx-stream tail: entry {last} skipped: {err}", file=sys.stderr)
                    continue
                print(json.dumps(rec.to_json()) if args.json else _line(rec), flush=True)
                shown += 1
                if args.count and shown >= args.count:
                    return 0
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except redis.RedisError as err:  # e.g. an ACL user that may not read the stream
        print(f"redis error: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
