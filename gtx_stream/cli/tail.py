"""`gtx-stream tail`: print finalised labels from `<prefix>:final` as they come."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

JSON_FIELDS = ("labelers", "labels", "accuracies")
NUMBER_FIELDS = {"label": int, "n_labels": int, "frame_index": int, "confidence": float,
                 "p1": float, "opened_at": float, "finalised_at": float}  # fmt: skip


def register(sub: Any) -> None:
    p = sub.add_parser("tail", help="print finalised labels")
    p.add_argument("--config", help="config file (default: ./config.toml)")
    p.add_argument("--follow", "-f", action="store_true", help="wait for new labels")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--from", dest="start", default="0", help="stream id to start after")
    p.add_argument("--count", type=int, default=0, help="stop after this many (0: no limit)")
    p.set_defaults(func=_run)


def decode_record(entry_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A final-stream entry as typed Python values (JSON lists parsed, numbers converted)."""
    out: dict[str, Any] = {"id": entry_id}
    for k, v in fields.items():
        if k in JSON_FIELDS:
            out[k] = json.loads(v)
        elif k in NUMBER_FIELDS and v != "":
            out[k] = NUMBER_FIELDS[k](v)
        else:
            out[k] = v
    return out


def _line(rec: dict[str, Any]) -> str:
    return (
        f"{rec['frame_id']}  label={rec['label']}  confidence={rec['confidence']:.4f}  "
        f"labels={rec['n_labels']}  reason={rec['reason']}"
    )


def _run(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
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
                last = entry_id.decode()
                rec = decode_record(last, {k.decode(): v.decode() for k, v in fields.items()})
                print(json.dumps(rec) if args.json else _line(rec), flush=True)
                shown += 1
                if args.count and shown >= args.count:
                    return 0
    except BrokenPipeError:
        sys.stderr.close()
        return 0
    except redis.RedisError as err:  # e.g. an ACL user that may not read the stream
        print(f"redis error: {err}", file=sys.stderr)
        return 1
