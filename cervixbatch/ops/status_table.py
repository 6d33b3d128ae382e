"""``cervixbatch status`` for a terminal: the verdict, the queue, then one row per worker."""

from __future__ import annotations

import io

from rich.markup import escape
from rich.table import Table

from cervixbatch.ops.status import StatusReport, WorkerState
from cervixbatch.report.formatting import format_duration, text_console

__all__ = ["render_status_table"]

_STATE_STYLE = {WorkerState.ALIVE: "green", WorkerState.STALE: "bold red", WorkerState.STOPPED: ""}
_LABEL = "[bold]{:<10}[/]"
_LEG_LABEL = {"cstore": "C-STORE", "stow": "STOW-RS"}  # results sent to a PACS, per state


def render_status_table(report: StatusReport, *, width: int = 120, colour: bool = False) -> str:
    """Plain text unless ``colour``; every value from the database escaped."""
    buffer = io.StringIO()
    console = text_console(buffer, width=width, colour=colour)
    verdict = (
        "[green]ok[/]" if report.healthy else "[bold red]" + "; ".join(report.problems) + "[/]"
    )
    console.print(_LABEL.format("status") + verdict)
    queue = "  ".join(f"{status} {count}" for status, count in report.queue.items())
    age = report.oldest_queued_age_s
    oldest = f"; oldest queued {format_duration(age)} ago" if age is not None else ""
    console.print(_LABEL.format("queue") + queue + oldest)
    if report.disk_free_mb is not None:
        low = " [bold red](low: no new inputs taken)[/]" if report.disk_low else ""
        console.print(
            _LABEL.format("disk") + f"{report.disk_free_mb:,.0f} MiB free on the outbox's disk "
            f"(watermark {report.min_free_mb:,.0f} MiB){low}"
        )
    for leg, states in report.deliveries.items():
        line = "  ".join(f"{state} {count}" for state, count in sorted(states.items()))
        console.print(_LABEL.format(_LEG_LABEL.get(leg, leg)) + line)
    for pause in report.paused:
        console.print(_LABEL.format("paused") + escape(f"{pause['worker']}: {pause['reason']}"))
    if report.last_error is not None:
        error = report.last_error
        where = f"input {error['input_id']}" if error["source"] == "input" else f"{error['worker']}"
        console.print(
            _LABEL.format("last error") + escape(f"{error['error']} ({where}, {error['at']})")
        )
    if not report.workers:
        console.print(_LABEL.format("workers") + "none registered")
        return buffer.getvalue()
    console.print()
    table = Table(show_edge=False, pad_edge=False, expand=False, header_style="bold")
    for column in ("worker", "kind", "state", "since", "heartbeat", "holds", "done", "models"):
        table.add_column(column, justify="right" if column in {"holds", "done"} else "left")
    for worker in report.workers:
        row = worker.row
        state = worker.state
        style = _STATE_STYLE[state]
        label = state.value + (" (process gone)" if worker.process_gone else "")
        models = (
            f"{row.cervix_model[:8]}/{row.lesion_model[:8]}"
            if row.cervix_model and row.lesion_model
            else ""
        )
        table.add_row(
            escape(f"{row.host}:{row.pid}"),
            escape(row.kind),
            f"[{style}]{label}[/]" if style else label,
            row.started_at.strftime("%Y-%m-%d %H:%M"),
            f"{format_duration(worker.heartbeat_age_s)} ago",
            str(row.holding),
            str(row.inputs_finished),
            escape(models),
        )
    console.print(table)
    return buffer.getvalue()
