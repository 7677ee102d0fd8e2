"""The /admin page's parts as HTML fragments, one per element id, built on the server from
:func:`gtx_stream.ops.metrics.dashboard` figures: the page shows them at once and its script
swaps them in every refresh, so there is one renderer. Every text is HTML-escaped."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from gtx_stream.server import admin_plots

_REASONS = {"confident": "confident", "kappa": "kappa labels", "exhausted": "no labeler left",
            "budget": "budget spent"}  # fmt: skip


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def summary(figures: Mapping[str, Any]) -> str:
    f, b = figures["frames"], figures["budget"]
    pm = figures["per_minute"]
    last_opened = pm["opened"][-2] if len(pm["opened"]) > 1 else 0.0
    last_final = pm["finalised"][-2] if len(pm["finalised"]) > 1 else 0.0
    cells = [
        ("frames-open", "frames open", f["open"]),
        ("frames-opened", "opened", f["opened"]),
        ("frames-finalised", "finalised", f["finalised"]),
        ("rate-opened", "opened last minute", round(last_opened, 1)),
        ("rate-finalised", "finalised last minute", round(last_final, 1)),
        ("dead-letters", "dead letters", f["dead_letters"]),
        ("labels-spent", "labels spent", b["spent"]),
        ("budget-left", "budget left", "unlimited" if b["left"] is None else b["left"]),
    ]
    return "".join(
        f'<div class="figure" id="{cid}"><span class="value">{_num(v, 1)}</span>'
        f'<span class="name">{escape(name)}</span></div>'
        for cid, name, v in cells
    )


def budget(figures: Mapping[str, Any]) -> str:
    b = figures["budget"]
    return (admin_plots.budget_bar(b) + '<p class="note">'
            f"{b['labels_applied']} labels applied to frames; spent counts labels obtained or "
            "outstanding, failed requests are given back.</p>")  # fmt: skip


def labelers(rows: Sequence[Mapping[str, Any]], now: float) -> str:
    names = ("labeler", "kind", "accuracy", "interval", "source", "gold", "labels", "failed",
             "live", "paused")  # fmt: skip
    head = "<tr>" + "".join(f"<th>{n}</th>" for n in names) + "</tr>"
    body = []
    for row in rows:
        interval = ("–" if row["lower"] is None else
                    f"{row['lower']:.3f} – {row['upper']:.3f}")  # fmt: skip
        if row["live"]:
            live = '<span class="live">live</span>'
        elif row["last_seen_s"] is None:
            live = "never seen"
        else:
            live = f"away {row['last_seen_s']:.0f} s"
        lid = escape(str(row["id"]))
        body.append(
            f'<tr data-labeler="{lid}" class="{escape(row["kind"])}"><td>{lid}</td>'
            f"<td>{escape(row['kind'])}</td><td>{_num(row['accuracy'])}</td><td>{interval}</td>"
            f"<td>{_num(row['source'])}</td><td>{_num(row['n'])}</td>"
            f"<td>{row['labels']}</td><td>{row['failed']}</td><td>{live}</td>"
            f"<td>{_num(row['paused'])}</td></tr>"
        )
    if not rows:
        body.append('<tr><td colspan="10">no labeler registered yet</td></tr>')
    paused = [r for r in rows if r["paused"]]
    note = (f'<p class="warning" id="paused">{len(paused)} paused: '
            + ", ".join(escape(f"{r['id']} ({r['paused']})") for r in paused) + "</p>"
            if paused else "")  # fmt: skip
    return (admin_plots.accuracy_chart(rows) + note + '<table id="labelers-table">'
            f"<thead>{head}</thead><tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def thumbnails(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return '<p class="note">no frame finalised yet</p>'
    out = []
    for item in items:
        fid = escape(str(item["frame_id"]))
        if item["has_image"]:
            pic = (f'<img src="thumbnail/{escape(item["entry_id"])}" alt="frame {fid}" '
                   'loading="lazy" width="160" height="120"/>')  # fmt: skip
        else:
            pic = '<div class="placeholder">image exported<br/>or expired</div>'
        at = time.strftime("%H:%M:%S", time.localtime(item["finalised_at"]))
        label = "yes" if item["label"] == 1 else "no"
        reason = escape(_REASONS.get(item["reason"], str(item["reason"])))
        out.append(
            f'<figure class="thumb label-{item["label"]}" data-frame="{fid}">{pic}'
            f"<figcaption><b>{label}</b> {_num(item['confidence'])}<br/>"
            f'<span class="small">{fid} · {item["n_labels"]} labels · {reason} · {at}'
            "</span></figcaption></figure>"
        )
    return "".join(out)


def sources(rows: Sequence[Mapping[str, Any]]) -> str:
    """Frames open, opened and finalised per source (camera, file, submitter), and labels
    spent where sources have shares of the budget."""
    if not rows:
        return '<p class="note">No frame opened yet.</p>'
    body = "".join(
        f'<tr data-source="{escape(r["source"])}"><td>{escape(r["source"])}</td>'
        f"<td>{r['open']}</td><td>{r['opened']}</td><td>{r['finalised']}</td>"
        f"<td>{r.get('spent', '-')}</td></tr>"
        for r in rows
    )
    return ('<table id="sources-table"><thead><tr><th>source</th><th>open</th><th>opened</th>'
            "<th>finalised</th><th>labels spent</th></tr></thead>"
            f"<tbody>{body}</tbody></table>")  # fmt: skip


def fragments(figures: Mapping[str, Any]) -> dict[str, str]:
    """Each part of the page by the id of the element it fills."""
    return {
        "summary": summary(figures),
        "budget": budget(figures),
        "opened-per-minute": admin_plots.opened_per_minute(figures["per_minute"]),
        "labels-per-frame": admin_plots.labels_per_frame(figures["labels_per_frame"]),
        "labelers": labelers(figures["labelers"], figures["now"]),
        "thumbnails": thumbnails(figures["thumbnails"]),
        "sources": sources(figures.get("sources", [])),
    }
