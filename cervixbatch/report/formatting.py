"""Durations, times and rates as people read them; shared by the table and the HTML page."""

from __future__ import annotations

import io

from rich.console import Console

from cervixbatch.report.stats import ReportStats

__all__ = ["format_duration", "format_ms", "format_rate", "text_console"]


def format_ms(ms: float) -> str:
    """Format milliseconds as ``840 ms``, ``12.3 s`` or ``4.1 min``."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def format_duration(seconds: float) -> str:
    """Format a span in the unit that reads best: ``45 s``, ``12 min``, ``3.5 h``, ``9 days``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_rate(stats: ReportStats) -> str | None:
    """Format the inputs finished per hour, or per day over spans longer than two days."""
    per_hour = stats.per_hour
    if per_hour is None:
        return None
    if stats.span_seconds >= 2 * 86400:
        return f"{per_hour * 24:,.0f} inputs/day"
    return f"{per_hour:,.1f} inputs/hour" if per_hour < 10 else f"{per_hour:,.0f} inputs/hour"


def text_console(buffer: io.StringIO, *, width: int, colour: bool) -> Console:
    """A rich console writing into ``buffer``: plain text unless ``colour``, and nothing
    rich would add by itself (highlighting, emoji, soft wrapping)."""
    return Console(
        file=buffer,
        width=width,
        force_terminal=colour,
        no_color=not colour,
        color_system="auto" if colour else None,
        highlight=False,
        soft_wrap=False,
        emoji=False,
    )
