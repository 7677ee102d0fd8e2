"""`gtx-stream frame ID`: one frame's state, labels, requests, image and record, from Redis."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import TYPE_CHECKING, Any

from gtx_stream.cli.options import add_config_option
from gtx_stream.cli.output import json_safe

if TYPE_CHECKING:
    from gtx_stream.ops.inspect import FrameReport, RequestView
    from gtx_stream.store.dead_letters import StoredLetter


def register(sub: Any) -> None:
    p = sub.add_parser(
        "frame",
        help="show one frame: its state, labels, requests, image and final record or dead letters",
        description=(
            "Everything Redis holds about one frame: its hash, its labels in arrival order, "
            "each labeler's request (out, late, failed or done, with request and entry ids and "
            "the lease), whether its JPEG is still kept, its final record, and its dead "
            "letters. Exits 1 when the pipeline knows no such frame."
        ),
    )
    p.add_argument("frame_id", metavar="ID", help="frame id, e.g. line3-120")
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    import redis

    from gtx_stream.config import load_settings
    from gtx_stream.ops.inspect import inspect_frame
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    client = connect(settings)
    prefix = settings.redis.prefix
    try:
        report = inspect_frame(client, Keys(prefix), args.frame_id)
    except redis.RedisError as err:  # e.g. an ACL user without the reads this needs
        print(f"redis error: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
    if not report.found:
        print(f"gtx-stream frame: no frame {args.frame_id!r} under prefix {prefix!r}",
              file=sys.stderr)  # fmt: skip
        return 1
    if args.json:
        print(json.dumps(json_safe(report.to_json()), indent=2))
    else:
        print(format_frame(report, time.time()))
    return 0


def when(at: float) -> str:
    """Unix seconds as UTC to the millisecond; ``-`` when unknown."""
    if not math.isfinite(at):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def format_frame(rep: FrameReport, now: float) -> str:
    """The text report: one section per part of the frame's state, ``-`` for what is unknown."""
    lines = [f"frame {rep.frame_id}: {rep.status}"]
    fields = rep.frame_fields()
    width = max((len(k) for k in fields), default=0)
    lines += [f"  {k:<{width}}  {v}" for k, v in fields.items()]
    labels = rep.state.labels if rep.state else ()
    lines.append(f"labels ({len(labels)}, in arrival order)")
    lines += [f"  {i:>2}. {lab} said {label}" for i, (lab, label) in enumerate(labels, 1)]
    lines.append(f"requests ({len(rep.requests)})")
    width = max((len(r.labeler) for r in rep.requests), default=0)
    final = rep.status == "final"
    lines += [f"  {r.labeler:<{width}}  {_request(r, now, final)}" for r in rep.requests]
    img = rep.image
    if img.present:
        kept = "no TTL" if math.isinf(img.ttl_s) else f"kept {img.ttl_s:.0f} s more"
        lines.append(f"image  {img.key}  {img.size} bytes, {kept}")
    else:
        lines.append(f"image  {img.key}  gone (exported, expired, or never stored)")
    lines += _final(rep)
    lines.append(f"dead letters ({len(rep.dead)})")
    lines += [f"  {_letter(d)}" for d in rep.dead]
    if not rep.complete:
        from gtx_stream.store.dead_letters import SCAN_LIMIT

        lines.append(f"(a stream was read only as deep as its newest {SCAN_LIMIT} entries)")
    return "\n".join(lines)


def _request(r: RequestView, now: float, final: bool) -> str:
    rid = r.request_id or "-"
    if r.state == "done":
        label = "-" if r.label is None else str(r.label)
        if r.entry_trimmed:
            return (f"done    label {label}  entry {r.entry_id} (trimmed from the labels "
                    "stream: its request id and time are gone)")  # fmt: skip
        return f"done    request {rid}  entry {r.entry_id}  label {label} at {when(r.labeled_at)}"
    if r.state == "out":
        if math.isnan(r.lease_deadline):
            return f"out     request {rid}  no lease"
        left = r.lease_deadline - now
        lease = f"ends in {left:.1f} s" if left >= 0 else f"ended {-left:.1f} s ago"
        return f"out     request {rid}  lease {lease} ({when(r.lease_deadline)})"
    if r.state == "late" and final:  # apply_labels.lua refuses it: frame already finalised
        return f"late    request {rid}  lease ran out; the frame was finalised without it"
    if r.state == "late":
        return f"late    request {rid}  lease ran out; its label is still applied once if it comes"
    return f"{r.state:<7} request {rid}"


def _final(rep: FrameReport) -> list[str]:
    rec = rep.final
    if rec is None:
        return ["final  -"]
    accs = " ".join(f"{a:.3f}" for a in rec.accuracies)
    return [
        f"final  label {rec.label}  p1 {rec.p1:.4f}  confidence {rec.confidence:.4f}  "
        f"reason {rec.reason}  method {rec.method}  ({rep.final_from}, entry {rec.entry_id})",
        f"  labelers {' '.join(rec.labelers)}  labels {' '.join(map(str, rec.labels))}  "
        f"accuracies {accs}",
        f"  finalised {when(rec.finalised_at)}  image {rec.image_key or '-'} until "
        f"{when(rec.image_expires_at)}",
    ]


def _letter(d: StoredLetter) -> str:
    return (
        f"{d.dead_id}  {when(d.letter.at)}  {d.letter.kind}: {d.letter.reason}  {d.letter.payload}"
    )
