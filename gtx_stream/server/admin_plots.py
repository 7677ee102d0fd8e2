"""The /admin dashboard's plots: inline SVG strings built from :mod:`gtx_stream.ops.metrics`
figures (no chart library, no script). Every text is XML-escaped; colours are presentation
attributes, not ``style``, so the page's Content-Security-Policy needs no ``unsafe-inline``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 26, 28
COLOURS = ("#2563eb", "#16a34a", "#d97706", "#9333ea")


def _svg(body: list[str], title: str, width: int = WIDTH, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label={quoteattr(title)}>'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _nice_top(value: float) -> float:
    """A round number at or above ``value`` (1, 2 or 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return float(step * power)
    return float(10 * power)


def _fmt(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.2g}"


def line_chart(
    title: str,
    minutes: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    unit: str,
) -> str:
    """One line per series over the minutes (a gap where a value is None), a y axis from 0 to
    a round top, a few clock times under the x axis, and a legend."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = _nice_top(max(values, default=0.0))
    n = len(minutes)
    pw, ph = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(i: int) -> float:
        return LEFT + (pw * i / (n - 1) if n > 1 else pw / 2)

    def y(v: float) -> float:
        return TOP + ph * (1 - v / top)

    body = [f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="#fafafa" '
            f'stroke="#ddd"/>']  # fmt: skip
    for k in range(6):
        v = top * k / 5
        body.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{y(v):.1f}" y2="{y(v):.1f}" '
                    f'stroke="#e5e5e5"/>')  # fmt: skip
        body.append(f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" font-size="11" '
                    f'text-anchor="end" fill="#555">{_fmt(v)}</text>')  # fmt: skip
    for i in range(0, n, max(1, n // 6)):
        label = time.strftime("%H:%M", time.localtime(minutes[i]))
        body.append(f'<text x="{x(i):.1f}" y="{HEIGHT - 8}" font-size="11" '
                    f'text-anchor="middle" fill="#555">{label}</text>')  # fmt: skip
    body.append(f'<text x="{LEFT}" y="16" font-size="12" fill="#333">{escape(unit)}</text>')
    for j, (name, vs) in enumerate(series.items()):
        colour = COLOURS[j % len(COLOURS)]
        runs: list[list[str]] = [[]]
        for i, value in enumerate(vs):
            if value is None:
                runs.append([])
            else:
                runs[-1].append(f"{x(i):.1f},{y(value):.1f}")
        for run in runs:
            if len(run) > 1:
                body.append(f'<polyline class="series" data-series={quoteattr(name)} '
                            f'points="{" ".join(run)}" fill="none" stroke="{colour}" '
                            f'stroke-width="2"/>')  # fmt: skip
            elif run:
                cx, cy = run[0].split(",")
                body.append(f'<circle class="series" data-series={quoteattr(name)} cx="{cx}" '
                            f'cy="{cy}" r="2.5" fill="{colour}"/>')  # fmt: skip
        lx = WIDTH - RIGHT - 150 * (len(series) - j)
        body.append(f'<rect x="{lx}" y="7" width="12" height="4" fill="{colour}"/>')
        body.append(f'<text x="{lx + 16}" y="14" font-size="12" fill="#333">'
                    f"{escape(name)}</text>")  # fmt: skip
    return _svg(body, title)


def opened_per_minute(per_minute: Mapping[str, Any]) -> str:
    """Frames opened and finalised in each of the last complete minutes (the current one,
    still counting, would always look like a drop); a gap where a minute is not measured."""
    return line_chart(
        "Frames opened and finalised per minute",
        per_minute["minutes"][:-1],
        {"opened": per_minute["opened"][:-1], "finalised": per_minute["finalised"][:-1]},
        "frames / minute",
    )


def labels_per_frame(figure: Mapping[str, Any]) -> str:
    """The mean labels per frame of the frames finalised in each minute."""
    return line_chart("Labels per finalised frame", figure["minutes"],
                      {"labels per frame": figure["mean"]}, "labels / frame")  # fmt: skip


def accuracy_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per labeler: its accuracy as a dot on [0, 1], its interval as a bar, filled
    when live, hollow when not; people and machines in two colours."""
    row_h, left, right = 22, 150, 16
    height = TOP + row_h * max(1, len(rows)) + 20
    pw = WIDTH - left - right

    def x(v: float) -> float:
        return left + pw * v

    body = []
    for k in range(11):
        v = k / 10
        body.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{TOP - 4}" '
                    f'y2="{height - 18}" stroke="#eee"/>')  # fmt: skip
        if k % 2 == 0:
            body.append(f'<text x="{x(v):.1f}" y="{height - 4}" font-size="11" '
                        f'text-anchor="middle" fill="#555">{v:.1f}</text>')  # fmt: skip
    body.append(f'<text x="{left}" y="16" font-size="12" fill="#333">accuracy and interval '
                f"(filled: live; blue: person, green: machine)</text>")  # fmt: skip
    for i, row in enumerate(rows):
        cy = TOP + row_h * i + row_h / 2
        colour = COLOURS[0] if row.get("kind") == "person" else COLOURS[1]
        name = str(row["id"]) + (" (paused)" if row.get("paused") else "")
        body.append(f'<text x="{left - 6}" y="{cy + 4:.1f}" font-size="12" text-anchor="end" '
                    f'fill="#222">{escape(name)}</text>')  # fmt: skip
        acc = row.get("accuracy")
        if acc is None:
            body.append(f'<text x="{left + 4}" y="{cy + 4:.1f}" font-size="11" fill="#888">'
                        f"not measured yet</text>")  # fmt: skip
            continue
        lo, hi = row.get("lower", acc), row.get("upper", acc)
        body.append(f'<line class="interval" x1="{x(lo):.1f}" x2="{x(hi):.1f}" y1="{cy:.1f}" '
                    f'y2="{cy:.1f}" stroke="{colour}" stroke-width="4" '
                    f'stroke-opacity="0.45"/>')  # fmt: skip
        fill = colour if row.get("live") else "#fff"
        body.append(f'<circle class="accuracy" data-labeler={quoteattr(str(row["id"]))} '
                    f'cx="{x(acc):.1f}" cy="{cy:.1f}" r="5" fill="{fill}" stroke="{colour}" '
                    f'stroke-width="2"/>')  # fmt: skip
    return _svg(body, "Labeler accuracies", height=height)


def budget_bar(budget: Mapping[str, Any]) -> str:
    """Labels spent against the limit (a bar full width when there is no limit)."""
    height, left, pw = 46, 8, WIDTH - 16
    spent, limit = int(budget["spent"]), budget.get("limit")
    share = 1.0 if not limit else min(1.0, spent / limit)
    caption = (f"{spent} labels spent, no limit" if limit is None else
               f"{spent} of {limit} labels spent, {budget['left']} left")  # fmt: skip
    body = [
        f'<rect x="{left}" y="20" width="{pw}" height="18" fill="#eee" rx="3"/>',
        f'<rect class="spent" x="{left}" y="20" width="{pw * share:.1f}" height="18" '
        f'fill="{COLOURS[2] if limit else "#bbb"}" rx="3"/>',
        f'<text x="{left}" y="14" font-size="12" fill="#333">{escape(caption)}</text>',
    ]
    return _svg(body, "Label budget", height=height)
