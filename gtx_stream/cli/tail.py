"""`gtx-stream tail`: print finalised labels from `<prefix>:final` as they come."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
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
    p.add_argument("--from", dest="start", default="0", metavar="ID", type=stream_id,
                   help="stream id to start after, as --json's entry_id (default: the "
                        "beginning)")  # fmt: skip
    p.add_argument("--count", type=non_negative_int, default=0, metavar="N",
                   help="stop after N frames (default 0: no limit)")  # fmt: skip
    p.set_defaults(func=_run)


def stream_id(text: str) -> str:
    """A Redis stream id (``<ms>`` or ``<ms>-<seq>``): before, ``--from xyz`` got as far as
    Redis ('Invalid stream ID specified as stream command argument'), and ``$`` never showed
    a frame on a cluster's shard streams."""
    if not re.fullmatch(r"\d+(-\d+)?", text):
        raise argparse.ArgumentTypeError(
            f"not a stream id (like 1796319689259-0, or 0 for the beginning): {text!r}"
        )
    return text


def _line(rec: FinalRecord) -> str:
    return (
        f"{rec.frame_id}  label={rec.label}  confidence={rec.confidence:.4f}  "
        f"labels={rec.n_labels}  reason={rec.reason}"
    )


def _run(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.store.cluster import is_cluster
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys
    from gtx_stream.store.shards import stored_keys

    settings = load_settings(args.config)
    client = connect(settings)
    shown = 0
    try:
        # on a Redis Cluster one final stream per shard, each read on its own (elsewhere one:
        # no need to read the shard count, which a consumer's ACL user may not)
        keys = Keys(settings.redis.prefix)
        keys = stored_keys(client, keys) if is_cluster(client) else keys
        streams = [s.final for s in keys.state_shards()]
        last = dict.fromkeys(streams, args.start)
        while True:
            entries = _read(client, last, args.follow)
            if not entries:
                if args.follow:
                    continue
                if not shown:  # a wrong prefix, or nothing finalised yet: say which stream
                    after = "" if args.start == "0" else f" after {args.start}"
                    print(f"gtx-stream tail: no finalised frame on {streams[0]}{after}"
                          + (f" (nor its {len(streams) - 1} other shards)" if len(streams) > 1
                             else ""), file=sys.stderr)  # fmt: skip
                return 0
            for stream, entry_id, fields in entries:
                last[stream] = entry_id
                try:
                    rec = FinalRecord.from_fields(decode_fields(fields), entry_id=entry_id)
                except RecordError as err:
                    # only finalise.lua writes this stream; say so and go on rather than stop
                    print(f"gtx-stream tail: entry {entry_id} skipped: {err}", file=sys.stderr)
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


POLL_SECONDS = 0.2
"""Following the final streams of several shards: how often they are read while all are
quiet (one command cannot block on streams of several cluster slots)."""


def _read(client: Any, last: dict[str, str], follow: bool) -> list[tuple[str, str, Any]]:
    """The next entries after ``last`` of each stream, oldest first by id: one blocking XREAD
    for one stream; for several, one XREAD each (one pipeline), and with ``follow`` again
    after :data:`POLL_SECONDS` while none came."""
    if len(last) == 1:
        ((stream, after),) = last.items()
        resp = client.xread({stream: after}, count=500, block=1000 if follow else None)
        return [(stream, text(i), f) for i, f in cast(list[Any], resp)[0][1]] if resp else []
    pipe = client.pipeline(transaction=False)
    for stream, after in last.items():
        pipe.xread({stream: after}, count=500)
    found = [(text(stream), text(i), f) for resp in pipe.execute()
             for stream, items in cast(list[Any], resp or []) for i, f in items]  # fmt: skip
    if not found and follow:
        time.sleep(POLL_SECONDS)
    return sorted(found, key=lambda e: tuple(int(x) for x in e[1].split("-")))
