"""`gtx-stream labelers load|assess|list`: labeler accuracies in Redis; `labelers invite ID`:
a person's one-time login link to the label server."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gtx_stream.cli.options import add_config_option

if TYPE_CHECKING:
    from gtx_stream.store.params import LabelerAccuracy


def register(sub: Any) -> None:
    p = sub.add_parser(
        "labelers",
        help="load, assess and list labeler accuracies (stored in Redis)",
        description="Labeler accuracies weigh each label in the posterior (equation 3).",
    )
    add_config_option(p)
    action = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    load = action.add_parser(
        "load",
        help="store accuracies from a file",
        description=(
            "Store accuracies from TOML ([[labelers]] id, accuracy) or CSV (id,accuracy), "
            "with optional lower, upper, n, correct and the two coins. A key or column not "
            "among them is refused; an id the config has no labeler of is stored with a "
            "warning (a typo, most often)."
        ),
    )
    load.add_argument("file", metavar="FILE", help=".toml or .csv")
    load.set_defaults(func=_load)

    assess = action.add_parser(
        "assess",
        help="estimate accuracies from an assessment set and store them",
        description=(
            "Estimate each worker's accuracy from gold answers: ANSWERS is task,worker,label "
            "and TRUTH is task,truth (as in the datasets). The Beta(1, 1) posterior mean with "
            "its 95% credible interval by default; --estimator mle gives equation (4) with "
            "the exact 95% interval."
        ),
    )
    assess.add_argument("answers", metavar="ANSWERS", help="CSV task,worker,label")
    assess.add_argument("truth", metavar="TRUTH", help="CSV task,truth")
    assess.add_argument(
        "--estimator",
        choices=["beta", "mle"],
        default="beta",
        help="beta: the Beta(1, 1) posterior mean (default); mle: equation (4)",
    )
    assess.add_argument(
        "--two-coin",
        action="store_true",
        help="also estimate each worker's sensitivity and specificity (aggregator.model two_coin)",
    )
    assess.add_argument("--dry-run", action="store_true", help="print the estimates, store nothing")
    assess.set_defaults(func=_assess)

    show = action.add_parser("list", help="show the stored accuracies")
    show.add_argument("--json", action="store_true", help="one JSON object: id -> record")
    show.set_defaults(func=_list)

    invite = action.add_parser(
        "invite",
        help="print a one-time login link for a person (backend human)",
        description=(
            "Print <label_server.public_url>/login/<token>: opening it logs the person in to "
            "the label server once (the token is stored hashed, with label_server."
            "invite_ttl_seconds; a second use is refused). Send it to that person only."
        ),
    )
    invite.add_argument("id", metavar="ID", help="a labeler of the config with backend human")
    invite.set_defaults(func=_invite)


def _client(args: argparse.Namespace, ids: Collection[str] = ()) -> Any:
    """The client and keys of the config's Redis, after a warning on stderr for each of
    ``ids`` (the labelers about to be stored) the config does not know."""
    from gtx_stream.config import load_settings
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys
    from gtx_stream.store.shards import layout

    settings = load_settings(args.config)
    client = connect(settings)
    keys = layout(client, Keys(settings.redis.prefix))  # the registry's name on a cluster
    warning = unknown_ids(ids, [lab.id for lab in settings.labelers])
    if warning:  # no command removes a record: say how
        print(f"warning: {warning}; stored anyway (redis-cli HDEL {keys.labelers} ID removes "
              "one)", file=sys.stderr)  # fmt: skip
    return client, keys


SHOWN_IDS = 8
"""Labeler ids a warning names at most (of those unknown, and of the config's)."""


def unknown_ids(ids: Collection[str], known: Sequence[str]) -> str | None:
    """One line on the ``ids`` not in ``known`` (None: all are), each with the config's id it
    is closest to: an id the config lacks is most often a typo, and no labeler worker of this
    config serves it, so its accuracy weighs nothing unless another config's labeler has it."""
    from difflib import get_close_matches

    missing = [lid for lid in ids if lid not in set(known)]
    if not missing:
        return None

    def named(lid: str) -> str:
        close = get_close_matches(lid, known, n=1)
        return f"{lid!r} (did you mean {close[0]!r}?)" if close else repr(lid)

    def listed(items: Sequence[str]) -> str:
        more = len(items) - SHOWN_IDS
        return ", ".join(items[:SHOWN_IDS]) + (f", ... ({len(items)} in all)" if more > 0 else "")

    what = (f"labeler {named(missing[0])} is" if len(missing) == 1
            else f"{len(missing)} labelers are")  # fmt: skip
    line = f"{what} not in the config"
    line += f" (its labelers: {listed(list(known))})" if known else " (it has no labelers)"
    if len(missing) > 1:
        line += f": {listed([named(lid) for lid in missing])}"
    return line


def _accuracies(n: int) -> str:
    return f"{n} labeler {'accuracy' if n == 1 else 'accuracies'}"


def labeler_table(
    records: Mapping[str, LabelerAccuracy], fit_labels: Mapping[str, int] | None = None
) -> str:
    """One row per labeler. ``gold``: the gold answers (assessment items, a person's gold
    frames) its estimate rests on, 0 for a given one; an em record's are those of its base.
    ``fit labels`` (shown when ``fit_labels`` has any): an em record's labels in the fit,
    ``-`` for a record no fit wrote. ``gold 1 / 0``: its gold answers per true class."""
    fit_labels = fit_labels or {}
    width = max([len("labeler")] + [len(k) for k in records])
    coins = any(rec.two_coin is not None for rec in records.values())
    head = f"{'labeler':<{width}}  accuracy  {'95% interval':<16}  {'gold':>5}"
    head += f"  {'fit labels':>10}" if fit_labels else ""
    # the source is the last column, unless the coins follow it
    sw = max([len("source")] + [len(rec.source) for rec in records.values()]) if coins else 0
    lines = [head + f"  {'source':<{sw}}"
             + ("  sensitivity  specificity  gold 1 / 0" if coins else "")]  # fmt: skip
    for lid, rec in records.items():
        line = (f"{lid:<{width}}  {rec.accuracy:8.4f}  [{rec.lower:.4f}, {rec.upper:.4f}]"
                f"  {rec.n:5d}")  # fmt: skip
        if fit_labels:
            line += f"  {fit_labels.get(lid, '-'):>10}"
        line += f"  {rec.source:<{sw}}"
        if rec.two_coin is not None:
            c = rec.two_coin
            line += (f"  {c.sensitivity:11.4f}  {c.specificity:11.4f}"
                     f"  {c.positives} / {c.negatives}")  # fmt: skip
        lines.append(line.rstrip())
    return "\n".join(lines)


def stored_table(stored: Mapping[str, str]) -> str:
    """:func:`labeler_table` of records as the labelers hash holds them (JSON), with each em
    record's labels in the fit."""
    from gtx_stream.store.em_params import EM_SOURCE
    from gtx_stream.store.params import LabelerAccuracy

    docs = {lid: json.loads(raw) for lid, raw in stored.items()}
    fit_labels = {lid: int(doc["labels"]) for lid, doc in docs.items()
                  if doc.get("source") == EM_SOURCE and "labels" in doc}  # fmt: skip
    records = {lid: LabelerAccuracy.from_dict(doc) for lid, doc in docs.items()}
    return labeler_table(records, fit_labels)


def _guard(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        import redis

        from gtx_stream.store.params import RegistryError

        try:
            return int(func(args))
        except RegistryError as err:
            print(f"labelers error: {err}", file=sys.stderr)
            return 2
        except redis.RedisError as err:
            print(f"redis error: {err}", file=sys.stderr)
            return 1

    return run


@_guard
def _load(args: argparse.Namespace) -> int:
    from gtx_stream.store.param_files import load_file
    from gtx_stream.store.params import store

    records = load_file(args.file)
    client, keys = _client(args, records)
    n = store(client, keys, records)
    print(labeler_table(records))
    print(f"stored {_accuracies(n)} in {keys.labelers}")
    return 0


@_guard
def _assess(args: argparse.Namespace) -> int:
    from gtx_stream.store.param_files import assess
    from gtx_stream.store.params import store

    records = assess(args.answers, args.truth, args.estimator, args.two_coin)
    _note_untruthed(args.answers, args.truth)
    if args.dry_run:
        print(labeler_table(records))
        return 0
    client, keys = _client(args, records)  # an unusable Redis stops it before any output
    print(labeler_table(records))
    n = store(client, keys, records)
    print(f"stored {_accuracies(n)} ({args.estimator}) in {keys.labelers}")
    return 0


def _note_untruthed(answers_path: str, truth_path: str) -> None:
    """Say on stderr how many answers went uncounted for want of a truth row: a TRUTH file
    that misses rows otherwise only shows as small gold counts."""
    from gtx_stream.core.datasets import read_answers, read_truth

    truth, answers = read_truth(truth_path), read_answers(answers_path)
    tasks = [task for task in answers if task not in truth]
    if tasks:
        n = sum(len(answers[task]) for task in tasks)
        print(f"note: {n} answer{'s' * (n != 1)} to {len(tasks)} task"
              f"{'s' * (len(tasks) != 1)} without a row in {truth_path} not counted",
              file=sys.stderr)  # fmt: skip


@_guard
def _list(args: argparse.Namespace) -> int:
    from gtx_stream.store.em_params import registered

    client, keys = _client(args)
    # each record as stored: a one-coin record has no two_coin key, an em record keeps its
    # base, fitted_at, labels and fallback (LabelerAccuracy would drop them)
    raw = {lid: reg.raw for lid, reg in registered(client, keys).items()}
    if args.json:
        print(json.dumps({k: json.loads(v) for k, v in raw.items()}, sort_keys=True))
        return 0
    if raw:
        print(stored_table(raw))
    else:
        print(f"no labeler accuracies stored in {keys.labelers}")
    return 0


@_guard
def _invite(args: argparse.Namespace) -> int:
    from gtx_stream.config import ConfigError, load_settings
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys
    from gtx_stream.store.people import create_invite

    settings = load_settings(args.config)
    found = [lab for lab in settings.labelers if lab.id == args.id]
    if not found or found[0].backend != "human":
        people = ", ".join(lab.id for lab in settings.labelers if lab.backend == "human")
        what = "not in labelers" if not found else f"backend {found[0].backend!r}, not human"
        raise ConfigError(
            f"config error: labeler {args.id!r} is {what} (people: {people or 'none'})"
        )
    s = settings.label_server
    token = create_invite(connect(settings), Keys(settings.redis.prefix), args.id,
                          s.invite_ttl_seconds)  # fmt: skip
    print(f"{s.public_url.rstrip('/')}/login/{token}")
    hours = s.invite_ttl_seconds / 3600
    print(f"one-time login link for {args.id}, valid {hours:g} h", file=sys.stderr)
    return 0
