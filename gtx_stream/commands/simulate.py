"""`gtx-stream simulate` (not built yet)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser("simulate", help="(not built yet)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("gtx-stream simulate: not built yet")
    return 1
