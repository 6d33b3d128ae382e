"""The report for a terminal: a summary people read at a glance, then the latest items.

Colour and the terminal's width on a terminal; plain text of a fixed width when piped.
Every value from the database goes through :func:`rich.markup.escape`: a file named
``[red]x.jpg`` is shown as it is, not as markup.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from cervixbatch.report.formatting import format_duration, format_ms, format_rate, text_console
from cervixbatch.report.query import ReportData, display_path
from cervixbatch.store.schema import Status

if TYPE_CHECKING:
    import datetime as dt

__all__ = ["render_table"]

_STATUS_STYLE: dict[str, str] = {
    Status.DONE: "green",
    Status.REJECTED: "yellow",
    Status.FAILED: "bold red",
    Status.QUEUED: "cyan",
    Status.PROCESSING: "blue",
}
_LABEL = "[bold]{:<12}[/]"


def _when(value: dt.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else "?"


def _summary_lines(data: ReportData) -> list[str]:
    """Build the summary block as console markup (database values escaped)."""
    summary, stats = data.summary, data.stats
    counts = "  ".join(
        f"[{style}]{status} {summary[status]}[/]" for status, style in _STATUS_STYLE.items()
    )
    lines = [f"[bold]{summary['total']} inputs[/]  {counts}"]
    if stats.reasons:
        by_status: dict[str, list[str]] = {}
        for status, reason, count in stats.reasons:
            by_status.setdefault(status, []).append(f"{escape(reason)} {count}")
        text = "; ".join(
            f"[{_STATUS_STYLE[status]}]{status}[/]: " + ", ".join(parts)
            for status, parts in by_status.items()
        )
        lines.append(_LABEL.format("reasons") + text)
    share = stats.lesion_positive_share
    if share is not None:
        lines.append(
            _LABEL.format("lesion")
            + f"[bold]{share:.0%}[/] lesion-positive: {stats.lesion_positive} of "
            f"{stats.frames_with_cervix} frames with a cervix have lesion > "
            f"{stats.lesion_threshold:.0%} of the cervix"
            + (
                f" ({stats.frames - stats.frames_with_cervix} frames without a cervix)"
                if stats.frames > stats.frames_with_cervix
                else ""
            )
        )
    if stats.finished:
        rate = format_rate(stats)
        span = format_duration(stats.span_seconds)
        lines.append(
            _LABEL.format("throughput")
            + (f"[bold]{rate}[/], " if rate else "")
            + f"{stats.finished} finished in {span} "
            f"({_when(stats.first_finished)} to {_when(stats.last_finished)} UTC)"
        )
    if stats.median_ms is not None and stats.slowest_ms is not None:
        slowest = display_path(stats.slowest_path or "", data.inbox)
        lines.append(
            _LABEL.format("time/input") + f"median [bold]{format_ms(stats.median_ms)}[/], slowest "
            f"{format_ms(stats.slowest_ms)} (#{stats.slowest_id} {escape(slowest)})"
        )
    for index, model in enumerate(stats.models):
        lines.append(
            _LABEL.format("models" if index == 0 else "")
            + f"cervix {model.cervix[:12]}  lesion {model.lesion[:12]}  "
            f"{escape(model.runtime)} {escape(model.precision)}"
            f"  {model.frames} frames, last {_when(model.last_used)}"
        )
        for stage, version in (("cervix", model.cervix), ("lesion", model.lesion)):
            if version in data.model_names:
                lines.append(
                    _LABEL.format("")
                    + f"  {stage} {version[:12]} = {escape(data.model_names[version])}"
                )
    for stage, why in data.precision_now.items():
        label = "precision" if stage == "cervix" else ""
        lines.append(_LABEL.format(label) + f"{escape(stage)}: " + escape(why))
    return lines


def render_table(
    data: ReportData,
    *,
    width: int | None = None,
    colour: bool = False,
) -> str:
    """Render the summary and the items; plain text unless ``colour``."""
    buffer = io.StringIO()
    console = text_console(buffer, width=width or 120, colour=colour)
    for line in _summary_lines(data):
        console.print(line, overflow="fold")
    if not data.items:
        console.print("no inputs match.")
        return buffer.getvalue()
    total = data.summary["total"]
    shown = len(data.items)
    console.print()
    console.print(
        f"[bold]latest {shown} of {total}[/]" + (" (--limit N for more)" if shown < total else "")
    )
    table = Table(show_edge=False, pad_edge=False, expand=False, header_style="bold")
    right = {"id", "frames", "cervix", "lesion", "time"}
    for column in ("id", "found", "status", "frames", "cervix", "lesion", "time", "reason", "path"):
        table.add_column(
            column,
            justify="right" if column in right else "left",
            no_wrap=column != "path",
            overflow="fold",
        )
    threshold = data.stats.lesion_threshold
    for item in data.items:
        status = Status(item.status).value
        results = item.results
        cervix = max((r.cervix_fraction for r in results), default=None)
        lesion = max((r.lesion_fraction for r in results if r.cervix_found), default=None)
        lesion_text = f"{lesion:.1%}" if lesion is not None else ""
        if lesion is not None and lesion > threshold:
            lesion_text = f"[bold magenta]{lesion_text}[/]"
        table.add_row(
            str(item.id),
            item.created_at.strftime("%Y-%m-%d %H:%M") if item.created_at else "",
            f"[{_STATUS_STYLE[status]}]{status}[/]",
            str(len(results)) if results else "",
            f"{cervix:.0%}" if cervix is not None else "",
            lesion_text,
            format_ms(item.processing_ms) if item.processing_ms is not None else "",
            escape(item.reason or ""),
            escape(display_path(item.path, data.inbox)),
        )
    console.print(table)
    return buffer.getvalue()
