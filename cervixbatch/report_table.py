"""The report for a terminal: a summary people read at a glance, then the latest items."""

from __future__ import annotations

import io
import statistics

from rich.console import Console
from rich.table import Table

from cervixbatch.report import ReportData, display_path
from cervixbatch.store.schema import Status

__all__ = ["render_table"]

_STATUS_STYLE = {
    "done": "green",
    "rejected": "yellow",
    "failed": "bold red",
    "queued": "cyan",
    "processing": "blue",
}


def render_table(
    data: ReportData, *, lesion_threshold: float = 0.05, width: int | None = None,
    colour: bool = False,
) -> str:
    """Renders the summary and the items; plain text unless ``colour``."""
    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width or 120, force_terminal=colour, no_color=not colour,
        highlight=False, soft_wrap=False,
    )
    summary = data.summary
    counts = "  ".join(
        f"[{_STATUS_STYLE[s.value]}]{s.value} {summary[s.value]}[/]" for s in Status
    )
    console.print(f"[bold]{summary['total']} inputs[/]  {counts}")

    frames = [r for item in data.items for r in item.results]
    found = [r for r in frames if r.cervix_found]
    if found:
        positive = sum(1 for r in found if r.lesion_fraction > lesion_threshold)
        console.print(
            f"lesion-positive frames (lesion > {lesion_threshold:.0%} of cervix): "
            f"{positive} of {len(found)} with a cervix ({positive / len(found):.0%})"
        )
    times = [i.processing_ms for i in data.items if i.processing_ms is not None
             and Status(i.status) is Status.DONE]
    if times:
        console.print(
            f"processing time per input: median {statistics.median(times):.0f} ms, "
            f"slowest {max(times):.0f} ms"
        )
    if data.reasons:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(data.reasons.items()))
        console.print(f"rejection and failure reasons: {reasons}")
    versions = sorted({(r.cervix_model[:12], r.lesion_model[:12]) for r in frames})
    for cervix, lesion in versions:
        console.print(f"models: cervix {cervix}  lesion {lesion}")

    if not data.items:
        console.print("no inputs match.")
        return buffer.getvalue()
    table = Table(show_edge=False, pad_edge=False, expand=False)
    for column, justify in (("id", "right"), ("found", "left"), ("status", "left"),
                            ("frames", "right"), ("cervix", "right"), ("lesion", "right"),
                            ("reason", "left"), ("path", "left")):
        table.add_column(column, justify=justify, no_wrap=column != "path")  # type: ignore[arg-type]
    for item in data.items:
        status = Status(item.status).value
        results = item.results
        cervix = max((r.cervix_fraction for r in results), default=None)
        lesion = max((r.lesion_fraction for r in results), default=None)
        table.add_row(
            str(item.id),
            item.created_at.strftime("%Y-%m-%d %H:%M") if item.created_at else "",
            f"[{_STATUS_STYLE[status]}]{status}[/]",
            str(len(results)) if results else "",
            f"{cervix:.0%}" if cervix is not None else "",
            f"{lesion:.1%}" if lesion is not None else "",
            item.reason or "",
            display_path(item.path, data.inbox),
        )
    console.print(table)
    return buffer.getvalue()
