"""The /admin page's parts as HTML fragments, one per element id, built on the server from
:func:`gtx_stream.ops.metrics.dashboard` figures: the page shows them at once and its script
swaps them in every refresh, so there is one renderer. Every text is HTML-escaped.

Rates per minute come from the counter samples the dashboard takes while it is open, so on
its first opening no minute is measured yet: :func:`measured_minutes` makes such minutes None
(not 0), and the page says "measuring" for them rather than showing zeros that look real."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from gtx_stream.ops import metrics
from gtx_stream.server import admin_plots

_REASONS = {"confident": "confident", "kappa": "kappa labels", "exhausted": "no labeler left",
            "budget": "budget spent"}  # fmt: skip


MEASURING = "measuring…"


def measured_minutes(
    per_minute: Mapping[str, Any], since: float | None, until: float | None
) -> dict[str, Any]:
    """``per_minute`` (:func:`gtx_stream.ops.metrics.per_minute`) with None for each minute
    the samples do not cover, and ``measured_since``: the oldest sample's time. The samples
    cover [``since``, ``until``] (oldest and newest) without a gap, since the growth between
    two samples is spread over the time between them. A complete minute is measured when
    ``since`` is at or before its start and ``until`` within one sampling period of its end
    (the next sample may not be taken yet); the current one, counted so far, when ``since``
    is at or before its start."""
    starts = list(per_minute["minutes"])
    last = len(starts) - 1

    def covered(i: int) -> bool:
        if since is None or until is None or since > starts[i]:
            return False
        return i == last or until >= starts[i] + 60.0 - metrics.SAMPLE_SECONDS

    out: dict[str, Any] = {"minutes": starts, "measured_since": since}
    for name, values in per_minute.items():
        if name not in ("minutes", "measured_since"):
            out[name] = [v if covered(i) else None for i, v in enumerate(values)]
    return out


def _num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def summary(figures: Mapping[str, Any]) -> str:
    f, b = figures["frames"], figures["budget"]
    pm = figures["per_minute"]
    last_opened = pm["opened"][-2] if len(pm["opened"]) > 1 else None
    last_final = pm["finalised"][-2] if len(pm["finalised"]) > 1 else None
    cells = [
        ("frames-open", "frames open", f["open"]),
        ("frames-opened", "opened", f["opened"]),
        ("frames-finalised", "finalised", f["finalised"]),
        ("rate-opened", "opened last minute", _rate(last_opened)),
        ("rate-finalised", "finalised last minute", _rate(last_final)),
        ("dead-letters", "dead letters", f["dead_letters"]),
        ("labels-spent", "labels spent", b["spent"]),
        ("budget-left", "budget left", "unlimited" if b["left"] is None else b["left"]),
    ]
    return "".join(
        f'<div class="figure" id="{cid}">'
        + ('<span class="value pending">' + MEASURING if v is None
           else f'<span class="value">{_num(v, 1)}')
        + f'</span><span class="name">{escape(name)}</span></div>'
        for cid, name, v in cells
    )  # fmt: skip


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def rates_note(per_minute: Mapping[str, Any]) -> str:
    """What the per-minute plot cannot show yet: minutes before the first sample."""
    since = per_minute.get("measured_since")
    complete = per_minute["opened"][:-1]
    if since is None or all(v is not None for v in complete):
        return ""
    clock = time.strftime("%H:%M:%S", time.localtime(since))
    if all(v is None for v in complete):
        first = time.strftime("%H:%M", time.localtime((math.floor(since / 60.0) + 2) * 60.0))
        when = f"the first whole minute shows at {first}"
    else:
        when = "earlier minutes are not shown"
    return (f'<p class="note" id="rates-note">Rates are measured from {clock} on (samples '
            f"of the counters, taken while this dashboard is open): {when}.</p>")  # fmt: skip


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
        elif row["paused"]:
            live = "–"  # a pause takes the person off the live labelers: not "never seen"
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
    used_up = [r for r in rows if r.get("gold_used_up")]
    if used_up:  # gold measures them no more; one not registered gets no frame
        who = ", ".join(escape(str(r["id"])) + ("" if r["registered"] else " (not qualified: "
                        "gets no frame)") for r in used_up)  # fmt: skip
        note += (f'<p class="warning" id="gold-used-up">{len(used_up)} answered every gold '
                 f"item, so gold measures them no more: {who}; gtx-stream gold load adds "
                 "more</p>")  # fmt: skip
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
        "opened-per-minute": rates_note(figures["per_minute"])
        + admin_plots.opened_per_minute(figures["per_minute"]),
        "labels-per-frame": admin_plots.labels_per_frame(figures["labels_per_frame"]),
        "labelers": labelers(figures["labelers"], figures["now"]),
        "thumbnails": thumbnails(figures["thumbnails"]),
        "sources": sources(figures.get("sources", [])),
    }
