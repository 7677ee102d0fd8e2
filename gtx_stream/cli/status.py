"""`gtx-stream status`: frames, budget, queues and labelers of a running pipeline."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from gtx_stream.cli.options import add_config_option


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="show a pipeline's frames, labels, budget and labelers (read from Redis)",
        description="What the pipeline under the configured key prefix is doing, from Redis.",
    )
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document")
    p.add_argument(
        "--check",
        action="store_true",
        help="health check: exit 1 when Redis is unreachable or the pipeline is stalled "
        "(open frames, no progress for aggregator.stall_seconds)",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from gtx_stream.config import ConfigError, load_settings
    from gtx_stream.ops.status import exporter_warning, health_problem, pipeline_status
    from gtx_stream.store.connection import connect_both, redacted
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    try:
        client, queue = connect_both(settings)  # one client unless redis.queue_url is set
    except ConfigError as err:
        if args.check:
            print(f"unhealthy: {err}", file=sys.stderr)
            return 1
        raise
    import redis

    prefix = settings.redis.prefix
    try:
        st = pipeline_status(client, Keys(prefix), settings.aggregator.live_seconds,
                             settings.export.group, settings.gold.qualification,
                             queue)  # fmt: skip
    except redis.RedisError as err:  # e.g. an ACL user without the reads status needs
        print(f"{'unhealthy: ' if args.check else ''}redis error: {err}", file=sys.stderr)
        return 1
    finally:
        client.close()
        queue.close()
    st["redis"] = redacted(settings.redis.url.get_secret_value())
    if settings.redis.queue_url.get_secret_value():  # label requests on a Redis of their own
        st["queue_redis"] = redacted(settings.redis.queue_url.get_secret_value())
    st["prefix"] = prefix
    # a lagging exporter is a warning, not unhealthy: the pipeline itself works
    warning = exporter_warning(st, settings.aggregator.stall_seconds)
    st["warnings"] = [warning] if warning else []
    if args.check:
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
        problem = health_problem(st, settings.aggregator.stall_seconds)
        if problem:
            print(f"unhealthy: {problem}", file=sys.stderr)
            return 1
        print(f"healthy: {st['frames_open']} frames open, {st['frames_finalised']} finalised "
              f"(prefix {prefix})")  # fmt: skip
        return 0
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(format_status(st, settings.export.group, settings.ingest.frame_ttl))
    return 0


def format_status(st: dict[str, Any], export_group: str = "exporter", frame_ttl: int = 0) -> str:
    """The text report; a value that is not there reads ``-`` or says why, never ``None``.
    ``export_group`` and ``frame_ttl`` (the settings) name what keeps the images when no
    exporter reads the final stream."""
    budget = "unlimited" if st["budget_limit"] is None else f"{st['budget_left']} left"
    oldest = st["oldest_open_age_s"]
    open_line = f"{st['frames_open']}" + ("" if oldest is None else f"  (oldest {oldest} s)")
    lines = [
        f"redis            {st['redis']}",
        *([f"queue redis      {st['queue_redis']}"] if st.get("queue_redis") else []),
        f"prefix           {st['prefix']}",
        f"frames open      {open_line}",
        f"frames final     {st['frames_finalised']}  dead letters {st['dead_letters']}",
        f"labels           {st['labels_applied']} applied, {st['budget_spent']} bought, {budget}",
    ]
    ex = st.get("exporter")
    if ex is not None:
        lag = "?" if ex["lag"] is None else ex["lag"]
        lines.append(f"images           {st['images_exported']} exported, {st['images_missing']} "
                     f"missing, {st['images_filtered']} filtered; group {ex['group']}: {lag} "
                     f"to read, {ex['pending']} pending")  # fmt: skip
    elif st["frames_finalised"]:  # nothing keeps the images of the frames labeled so far
        ttl = f" {frame_ttl} s" if frame_ttl else ""
        lines.append(f"images           not exported (no exporter group {export_group!r} on the "
                     f"final stream): each JPEG expires{ttl} after its frame opened "
                     f"(ingest.frame_ttl); gtx-stream export keeps them")  # fmt: skip
    if st.get("shard_owners"):  # several shards: who owns each
        owned = "  ".join(f"s{k} {o or '(none)'}" for k, o in enumerate(st["shard_owners"]))
        lines.append(f"shards           {st['shards']}: {owned}")
    lines += [f"warning          {w}" for w in st.get("warnings", [])]
    lines += _gold_lines(st)
    if len(st.get("sources") or []) > 1:  # one line per source once there are several
        lines.append(f"{'source':<24}{'open':>6}{'opened':>9}{'finalised':>11}{'spent':>8}")
        lines += [f"{r['source']:<24}{r['open']:>6}{r['opened']:>9}{r['finalised']:>11}"
                  f"{r.get('spent', '-'):>8}" for r in st["sources"]]  # fmt: skip
    if not st["labelers"]:
        lines.append(f"labelers         none registered under {st['prefix']}")
        return "\n".join(lines)
    lines.append(f"{'labeler':<16}{'live':>6}{'accuracy':>10}{'source':>12}{'labels':>8}"
                 f"{'queue':>7}{'out':>5}{'failed':>8}  backoff")  # fmt: skip
    for lab, v in st["labelers"].items():
        acc = "-" if v["accuracy"] is None else f"{v['accuracy']:.3f}"
        # a labeler that failed its last requests in a row is not asked for a while
        wait, failed = v.get("backoff_s", 0), v.get("failed", 0)
        backoff = (f"{wait:g} s ({v.get('failures_in_a_row', 0)} failed in a row)"
                   if wait > 0 else "-")  # fmt: skip
        source = v.get("source") or "-"
        if v.get("fitted_at"):  # refitted by the estimator: how long ago
            source = f"em {max(0.0, time.time() - v['fitted_at']):.0f}s"
        coins = ""
        if v.get("sensitivity") is not None:
            coins = f"  (sens {v['sensitivity']:.3f}, spec {v['specificity']:.3f})"
        lines.append(f"{lab:<16}{'yes' if v['live'] else 'no':>6}{acc:>10}{source:>12}"
                     f"{v['labels']:>8}{v['queue']:>7}{v['outstanding']:>5}{failed:>8}  "
                     f"{backoff}{coins}")  # fmt: skip
    return "\n".join(lines)


def _gold_lines(st: dict[str, Any]) -> list[str]:
    """Gold items and answers, who is paused and why, and each person's gold record."""
    people = st.get("people") or {}
    if not st.get("gold_items") and not people:
        return []
    lines = [f"gold             {st['gold_items']} items, {st['gold_answers']} answers "
             "(assessment, not charged to the budget)"]  # fmt: skip
    lines += [f"paused           {p}: {why}" for p, why in st.get("paused", {}).items()]
    for p in st.get("gold_used_up", []):  # every gold item answered: the label server warns too
        # registered (qualified, or by a configured accuracy): they still get frames
        then = ("gold measures them no more" if p in st["labelers"] else
                "not qualified, so they get no frame")  # fmt: skip
        lines.append(f"gold used up     {p}: answered all {people[p]['gold_answers']} items, "
                     f"{then} (gtx-stream gold load adds more)")  # fmt: skip
    if people:
        lines.append(f"{'person':<16}{'gold':>6}{'right':>7}{'accuracy':>10}  "
                     f"{'interval':<14}  state")  # fmt: skip
    for person, v in people.items():
        state = "paused" if v["paused"] else "qualified" if v["qualified"] else "qualifying"
        lines.append(f"{person:<16}{v['gold_answers']:>6}{v['correct']:>7}{v['accuracy']:>10.3f}"
                     f"  [{v['lower']:.3f}, {v['upper']:.3f}]  {state}")  # fmt: skip
    return lines
