"""The report as one self-contained HTML page that opens from disk, with no server.

A summary, then a contact sheet of overlay thumbnails grouped by day and, for DICOM
inputs, by study; rejected and failed inputs with their reasons. Thumbnails are small
JPEGs written beside the page, in ``<page stem>_files/``; links to the full overlays and
masks are relative when the page and the outbox share a folder above them, so both can be
moved together. The CSS and the script are inlined from ``templates/``; the page loads
nothing from the network, and its Content-Security-Policy says so.

Every value from the database or a file name is escaped. Patient names are shown only
with ``show_patient`` (read from the DICOM source file at render time: the database holds
none); by default nothing that names a patient is on the page.
"""

from __future__ import annotations

import datetime as dt
import html
import importlib.resources
import os
import secrets
import string
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from cervixbatch.report.formatting import format_duration, format_ms, format_rate
from cervixbatch.report.query import ReportData, display_path
from cervixbatch.report.thumbnails import ThumbnailJob, make_thumbnails
from cervixbatch.store.schema import Input, Result, Status
from cervixbatch.version import __version__

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["assets_dir", "render_html"]


def _esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _template(name: str) -> str:
    return (
        importlib.resources.files("cervixbatch.report")
        .joinpath("templates", name)
        .read_text("utf-8")
    )


def assets_dir(output: Path) -> Path:
    """Return the folder of the page's thumbnails: ``report.html`` → ``report_files/``."""
    return output.parent / f"{output.stem}_files"


def _href(target: Path, base: Path) -> str:
    """Link to ``target`` from ``base``: relative below a shared folder, else file://."""
    common = Path(os.path.commonpath([target, base]))
    if common != Path(common.anchor):
        return quote(Path(os.path.relpath(target, base)).as_posix())
    return target.as_uri()


def _patient_name(item: Input) -> str | None:
    """Read PatientName from the DICOM source file, where it still exists (``--show-patient``)."""
    if item.kind != "dicom":
        return None
    import pydicom  # only with --show-patient

    for path in [item.path, *(s.path for s in item.sightings)]:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["PatientName"])
        except Exception:  # noqa: BLE001, S112 - moved, deleted or unreadable: try the next
            continue
        name = ds.get("PatientName")
        return str(name) if name else None
    return None


def _badge(status: str) -> str:
    return f'<span class="badge {_esc(status)}">{_esc(status)}</span>'


def _tile(label: str, value: str, note: str = "", cls: str = "") -> str:
    note_html = f'<div class="note">{note}</div>' if note else ""
    return (
        f'<div class="tile {cls}"><div class="label">{_esc(label)}</div>'
        f'<div class="value">{value}</div>{note_html}</div>'
    )


def _model_name(names: dict[str, str], version: str) -> str:
    """The configured model's format and architecture under its sha256, when known."""
    name = names.get(version)
    return f"<br><small>{_esc(name)}</small>" if name else ""


def _summary(data: ReportData) -> str:
    summary, stats = data.summary, data.stats
    tiles = [_tile("inputs", f"{summary['total']:,}", cls="total")]
    tiles += [
        _tile(s.value, f"{summary[s.value]:,}", cls=f"st-{s.value}")
        for s in Status
        if summary[s.value] or s.terminal
    ]
    share = stats.lesion_positive_share
    if share is not None:
        bar = f'<div class="bar big"><span style="width:{share * 100:.1f}%"></span></div>'
        tiles.append(
            _tile(
                "lesion-positive",
                f"{share:.0%}",
                f"{stats.lesion_positive:,} of {stats.frames_with_cervix:,} frames with a cervix "
                f"have lesion &gt; {stats.lesion_threshold:.0%}{bar}",
                cls="wide",
            )
        )
    if stats.finished:
        rate = format_rate(stats)
        span = _esc(format_duration(stats.span_seconds))
        tiles.append(
            _tile(
                "throughput",
                _esc(rate.replace(" inputs", "") if rate else f"{stats.finished:,}"),
                f"{stats.finished:,} finished in {span}" if rate else f"finished in {span}",
            )
        )
    if stats.median_ms is not None and stats.slowest_ms is not None:
        slowest = display_path(stats.slowest_path or "", data.inbox)
        tiles.append(
            _tile(
                "time per input",
                _esc(format_ms(stats.median_ms)),
                f"slowest {_esc(format_ms(stats.slowest_ms))} "
                f'<span class="path">#{stats.slowest_id} {_esc(slowest)}</span>',
            )
        )
    parts = [f'<div class="tiles">{"".join(tiles)}</div>']
    details = []
    if stats.reasons:
        rows = "".join(
            f"<tr><td>{_badge(status)}</td><td><code>{_esc(reason)}</code></td>"
            f'<td class="num">{count:,}</td></tr>'
            for status, reason, count in stats.reasons
        )
        details.append(
            f'<div class="panel"><h3>Rejection and failure reasons</h3>'
            f"<table><tbody>{rows}</tbody></table></div>"
        )
    if stats.models:
        rows = "".join(
            f'<tr><td><code title="{_esc(m.cervix)}">{_esc(m.cervix[:12])}</code>'
            f"{_model_name(data.model_names, m.cervix)}</td>"
            f'<td><code title="{_esc(m.lesion)}">{_esc(m.lesion[:12])}</code>'
            f"{_model_name(data.model_names, m.lesion)}</td>"
            f"<td>{_esc(m.runtime)} {_esc(m.precision)}</td>"
            f'<td class="num">{m.frames:,}</td>'
            f"<td>{_esc(_when(m.last_used))}</td></tr>"
            for m in stats.models
        )
        now = "".join(
            f"<li><b>{_esc(stage)}</b>: {_esc(why)}</li>"
            for stage, why in data.precision_now.items()
        )
        details.append(
            '<div class="panel"><h3>Models in use</h3><table><thead><tr><th>cervix</th>'
            "<th>lesion</th><th>runtime, precision</th>"
            '<th class="num">frames</th><th>last used</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>"
            + (f'<p class="muted">Precision now, and why:</p><ul>{now}</ul>' if now else "")
            + "</div>"
        )
    if details:
        parts.append(f'<div class="panels">{"".join(details)}</div>')
    return "".join(parts)


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else ""


def _card(
    item: Input, result: Result, *, thumb: str | None, base: Path, name: str, threshold: float
) -> str:
    status = Status(item.status).value
    lesion = result.lesion_fraction if result.cervix_found else 0.0
    positive = result.cervix_found and lesion > threshold
    overlay = _href(Path(result.overlay_path), base)
    image = (
        f'<img src="{_esc(thumb)}" alt="overlay of {_esc(name)}" decoding="async">'
        if thumb is not None
        else '<div class="missing">overlay missing</div>'
    )
    links = [
        ("overlay", "full-size overlay", result.overlay_path),
        ("cervix", "cervix mask", result.cervix_mask_path),
        ("lesion", "lesion mask", result.lesion_mask_path),
        ("crop", "the crop stage 2 saw", result.crop_path),
    ]
    link_html = " ".join(
        f'<a href="{_esc(_href(Path(path), base))}" title="{_esc(title)}">{_esc(label)}</a>'
        for label, title, path in links
        if path
    )
    frame = (
        f'<span class="frame">frame {result.frame + 1}/{item.frame_count}</span>'
        if (item.frame_count or 1) > 1
        else ""
    )
    measure = (
        f'<div class="measure"><span>lesion <b>{lesion:.1%}</b></span>'
        f"<span>cervix {result.cervix_fraction:.0%}</span></div>"
        f'<div class="bar{" pos" if positive else ""}" title="lesion fraction {lesion:.2%}">'
        f'<span style="width:{min(100.0, lesion * 100):.2f}%"></span>'
        f'<i style="left:{threshold * 100:.2f}%"></i></div>'
        if result.cervix_found
        else '<div class="measure"><span>no cervix found</span></div>'
    )
    return (
        f'<article class="card{" positive" if positive else ""}" data-status="{_esc(status)}" '
        f'data-lesion="{lesion:.6f}" data-time="{item.created_at.timestamp():.3f}" '
        f'data-name="{_esc(name.lower())}" data-id="{item.id}">'
        f'<a class="thumb" href="{_esc(overlay)}">{image}</a>'
        f'<div class="body"><div class="title" title="{_esc(name)}">{_esc(name)}</div>'
        f'<div class="meta">{_badge(status)}{frame}<span class="id">#{item.id}</span></div>'
        f'{measure}<div class="links">{link_html}</div></div></article>'
    )


def _groups(items: Iterable[Input]) -> dict[str, dict[str | None, list[Input]]]:
    """Day (UTC) → study UID (None for photos) → items, newest day first."""
    days: dict[str, dict[str | None, list[Input]]] = {}
    for item in items:
        if not item.results:
            continue
        day = item.created_at.strftime("%Y-%m-%d")
        days.setdefault(day, {}).setdefault(item.study_uid, []).append(item)
    return days


def _sheet(
    data: ReportData, thumbs: dict[tuple[int, int], str], base: Path, show_patient: bool
) -> str:
    threshold = data.stats.lesion_threshold
    sections = []
    for day, studies in _groups(data.items).items():
        blocks = []
        frames = 0
        for study, items in sorted(studies.items(), key=lambda kv: kv[0] is not None):
            cards = [
                _card(
                    item,
                    r,
                    thumb=thumbs.get((item.id, r.frame)),
                    base=base,
                    name=display_path(item.path, data.inbox),
                    threshold=threshold,
                )
                for item in items
                for r in item.results
            ]
            frames += len(cards)
            if study is None:
                heading = f'<h3>Photos <span class="count">{len(cards)}</span></h3>'
            else:
                patient = _patient_name(items[0]) if show_patient else None
                who = f' <span class="patient">{_esc(patient)}</span>' if patient else ""
                heading = (
                    f"<h3>DICOM study <code>{_esc(study)}</code>{who} "
                    f'<span class="count">{len(cards)}</span></h3>'
                )
            blocks.append(
                f'<div class="group">{heading}<div class="grid">{"".join(cards)}</div></div>'
            )
        sections.append(
            f'<section class="day"><h2>{_esc(day)} <span class="count">{frames} '
            f"frames</span></h2>{''.join(blocks)}</section>"
        )
    if not sections:
        return '<p class="empty">No processed images match.</p>'
    return "".join(sections)


def _problems(data: ReportData) -> str:
    rows = []
    for item in data.items:
        status = Status(item.status).value
        if status == Status.DONE.value:
            continue
        name = display_path(item.path, data.inbox)
        rows.append(
            f'<tr data-status="{_esc(status)}" data-name="{_esc(name.lower())}">'
            f'<td class="num">#{item.id}</td><td>{_esc(_when(item.created_at))}</td>'
            f"<td>{_badge(status)}</td><td><code>{_esc(item.reason or '')}</code></td>"
            f'<td>{_esc(item.detail or "")}</td><td class="path">{_esc(name)}</td></tr>'
        )
    if not rows:
        return ""
    return (
        '<section class="problems"><h2>Not processed <span class="count">'
        f"{len(rows)}</span></h2><table><thead><tr><th>id</th><th>found</th><th>status</th>"
        "<th>reason</th><th>detail</th><th>path</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></section>"
    )


def _filters_text(data: ReportData) -> str:
    f = data.report_filter
    parts = []
    if f.since:
        parts.append(f"since {f.since.isoformat()}")
    if f.until:
        parts.append(f"until {f.until.isoformat()}")
    if f.statuses:
        parts.append("status " + ", ".join(s.value for s in f.statuses))
    if f.reasons:
        parts.append("reason " + ", ".join(f.reasons))
    shown = len(data.items)
    if shown < data.summary["total"]:
        parts.append(f"latest {shown:,} of {data.summary['total']:,} inputs shown (--limit)")
    return "; ".join(parts) or "all inputs"


def render_html(data: ReportData, *, output: Path, show_patient: bool = False) -> str:
    """Write the thumbnails beside ``output`` and return the page's HTML text."""
    output = Path(os.path.abspath(output))  # noqa: PTH100 - keep symlinks as named
    base = output.parent
    folder = assets_dir(output)
    jobs: dict[tuple[int, int], ThumbnailJob] = {}
    for item in data.items:
        for r in item.results:
            dest = folder / f"{item.id:08d}_{r.frame:04d}.jpg"
            jobs[(item.id, r.frame)] = ThumbnailJob(Path(r.overlay_path), dest, r.width, r.height)
    made = make_thumbnails(jobs.values())
    thumbs = {key: _href(job.dest, base) for key, job in jobs.items() if made.get(job.dest)}
    present = [s for s in Status if data.summary[s.value] or s is Status.DONE]
    chips = "".join(
        f'<label class="chip {s.value}"><input type="checkbox" value="{s.value}" checked>'
        f"{s.value}</label>"
        for s in present
    )
    nonce = secrets.token_urlsafe(16)
    page = string.Template(_template("report.html"))
    return page.substitute(
        nonce=nonce,
        chips=chips,
        css=_template("report.css"),
        js=_template("report.js"),
        version=_esc(__version__),
        generated=_esc(dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        filters=_esc(_filters_text(data)),
        summary=_summary(data),
        sheet=_sheet(data, thumbs, base, show_patient),
        problems=_problems(data),
        threshold=f"{data.stats.lesion_threshold * 100:g}",
    )
