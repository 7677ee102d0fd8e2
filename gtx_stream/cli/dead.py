"""`gtx-stream dead`: dead letters by reason; `--requeue` sends back those that apply now."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gtx_stream.cli.frame import when
from gtx_stream.cli.options import add_config_option, non_negative_int
from gtx_stream.cli.output import json_safe

if TYPE_CHECKING:
    from gtx_stream.ops.dead import Outcome, ReasonGroup
    from gtx_stream.store.dead_letters import DeadScan


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dead",
        help="list dead letters by reason; --requeue re-queues labels that can be applied now",
        description=(
            "Dead letters (<prefix>:dead) grouped by reason, most frequent first, with the "
            "newest few of each. --requeue adds back to the labels stream every label refused "
            "because its labeler was not registered or its frame did not exist, when the "
            "aggregator would apply it now (the labeler registered since, its request still "
            "outstanding or late), and deletes its dead letter in the same step; the others "
            "are left where they are, each with why."
        ),
    )
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument(
        "--requeue",
        action="store_true",
        help="re-queue the labels that can be applied now (needs write access)",
    )
    p.add_argument(
        "--reason",
        default="",
        metavar="TEXT",
        help="only dead letters whose reason contains TEXT (any case)",
    )
    p.add_argument(
        "--limit",
        type=non_negative_int,
        default=3,
        metavar="N",
        help="dead letters shown per reason, newest first (default 3; 0: all)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.ops.dead import by_reason, requeue, with_reason
    from gtx_stream.store.connection import connect
    from gtx_stream.store.dead_letters import read_dead
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    client = connect(settings)
    keys = Keys(settings.redis.prefix)
    try:
        scan = read_dead(client, keys)
        letters = with_reason(scan.letters, args.reason)
        outcomes = requeue(client, keys, letters) if args.requeue else None
    except redis.RedisError as err:  # e.g. an ACL user that may only read
        print(f"redis error: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if outcomes is not None:
        print(_requeue_json(outcomes, args.limit) if args.json
              else format_requeue(outcomes, args.limit))  # fmt: skip
        return 0
    groups = by_reason(letters, args.limit)
    if args.json:
        print(json.dumps(json_safe({
            "prefix": keys.prefix, "dead_letters": len(letters), "complete": scan.complete,
            "reason_contains": args.reason, "read": len(scan.letters),
            "reasons": [{"reason": g.reason, "count": g.count, "kinds": g.kinds,
                         "newest": [s.to_json() for s in g.newest]} for g in groups],
        }), indent=2))  # fmt: skip
        return 0
    print(format_groups(groups, len(letters), scan, keys.prefix, args.reason))
    return 0


def format_groups(
    groups: Sequence[ReasonGroup], n: int, scan: DeadScan, prefix: str, reason: str = ""
) -> str:
    # with --reason, of how many: 'dead letters 0' alone read as none at all
    among = f" of {len(scan.letters)} with a reason containing {reason!r}" if reason else ""
    lines = [f"dead letters  {n}{among}  (prefix {prefix})"]
    if not scan.complete:
        lines.append(f"  only the newest {len(scan.letters)} were read")
    for g in groups:
        # "(2 labels, 1 frame)": "(label 2)" read as the label value 2
        kinds = ", ".join(f"{c} {k}{'' if c == 1 else 's'}" for k, c in sorted(g.kinds.items()))
        lines.append(f"{g.count:>6}  {g.reason}  ({kinds})")
        for s in g.newest:
            lines.append(f"        {s.dead_id}  {when(s.letter.at)}  {s.letter.payload[:160]}")
    return "\n".join(lines)


def format_requeue(outcomes: Sequence[Outcome], limit: int) -> str:
    from gtx_stream.ops.dead import not_requeued

    done = [o for o in outcomes if o.requeued]
    lines = [f"re-queued {len(done)} of {len(outcomes)} dead letters"]
    for o in done:
        assert o.entry is not None  # a re-queued letter is a label entry
        lines.append(f"  {o.stored.dead_id} -> labels {o.new_id}  {o.entry.frame_id} "
                     f"{o.entry.labeler}  ({o.stored.letter.reason})")  # fmt: skip
    for why, count, newest in not_requeued(outcomes, limit):
        lines.append(f"not re-queued {count}: {why}")
        for o in newest:
            lines.append(f"  {o.stored.dead_id}  {o.stored.letter.reason}  "
                         f"{o.stored.letter.payload[:160]}")  # fmt: skip
    return "\n".join(lines)


def _requeue_json(outcomes: Sequence[Outcome], limit: int) -> str:
    from gtx_stream.ops.dead import not_requeued

    doc = {
        "requeued": [{**o.stored.to_json(), "labels_id": o.new_id} for o in outcomes
                     if o.requeued],
        "not_requeued": [{"why": why, "count": count,
                          "newest": [o.stored.to_json() for o in newest]}
                         for why, count, newest in not_requeued(outcomes, limit)],
    }  # fmt: skip
    return json.dumps(json_safe(doc), indent=2)
