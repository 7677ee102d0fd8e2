"""`gtx-stream export`: finalised frames into a dataset folder, or `--check` one."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

from gtx_stream.cli.options import add_config_option

log = logging.getLogger("gtx_stream.pipeline.export.exporter")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write finalised frames into a dataset folder (class folders per split, manifest)",
        description=(
            "Read the final stream through the exporter's consumer group and write each frame "
            "once: DIR/<split>/<class name>/<frame id>.jpg and a row of DIR/manifest.jsonl "
            "(also for a frame whose image is gone, with why). Without --follow, export what "
            "the stream holds now and exit 0 with a summary; with --follow, run until SIGTERM "
            "or Ctrl-C (the current batch is finished). See docs/export.md."
        ),
    )
    add_config_option(p)
    p.add_argument("--out", type=Path, help="dataset folder (default: export.out)")
    p.add_argument("--follow", action="store_true", help="keep exporting until stopped")
    p.add_argument("--format", choices=["folder", "parquet"], default="folder",
                   help="folder: JPEG files in class folders (default); parquet: image bytes "
                        "and every field in Parquet files per split (needs pyarrow)")  # fmt: skip
    p.add_argument("--check", type=Path, metavar="DIR",
                   help="verify DIR against its manifest and exit 0, or 1 with a line per "
                        "problem (no Redis needed)")  # fmt: skip
    p.add_argument("--consumer", help="consumer name in the group (default: host-pid)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.check is not None:
        return _check(args.check)
    from gtx_stream.cli.aggregator import stop_on_signals
    from gtx_stream.config import EXIT_CONFIG, ConfigError, load_settings
    from gtx_stream.pipeline.aggregate.consumer import StateLost
    from gtx_stream.pipeline.export.exporter import Exporter, ExportError
    from gtx_stream.store.connection import connect
    from gtx_stream.store.keys import Keys

    settings = load_settings(args.config)
    out = args.out or (Path(settings.export.out) if settings.export.out else None)
    if out is None:
        raise ConfigError("export: --out DIR is needed (or export.out in the config)")
    client = connect(settings)
    try:
        exporter = Exporter(client, Keys(settings.redis.prefix), settings.export, out,
                            fmt=args.format, consumer=args.consumer)  # fmt: skip
        exporter.setup()
    except ExportError as err:
        print(f"gtx-stream export: {err}", file=sys.stderr)
        return err.exit_status
    except OSError as err:  # a folder that cannot be made or written (a volume's owner)
        print(f"gtx-stream export: cannot write to {out}: {err.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    stop = threading.Event()
    if args.follow:
        stop_on_signals(stop, log)
        log.info("exporter %s: group %s -> %s (%s)", exporter.consumer, settings.export.group,
                 out, args.format)  # fmt: skip
    try:
        report = exporter.run(stop, follow=args.follow)
    except StateLost as err:  # what was exported is on disk; the group to go on from is gone
        print(f"gtx-stream export: {err}", file=sys.stderr)
        return 1
    finally:
        exporter.close()
        client.close()
    print(report.summary())
    return 0


def _check(root: Path) -> int:
    from gtx_stream.pipeline.export.check import check_folder

    problems = check_folder(root)
    for line in problems:
        print(line)
    if problems:
        print(f"{root}: {len(problems)} problem{'s' * (len(problems) > 1)}", file=sys.stderr)
        return 1
    print(f"{root}: consistent with its manifest")
    return 0
