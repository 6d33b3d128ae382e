"""How the DICOM results are getting on to the PACS, for ``cervixbatch status``."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cervixbatch.store.schema import Result, WebhookNotice

__all__ = ["delivery_counts"]


def delivery_counts(session: Session) -> dict[str, dict[str, int]]:
    """Per leg (``cstore``: ``[dicom] forward``; ``stow``: ``[dicomweb] stow_url``), how
    many results are pending, sent and failed, and (``webhook``) how many notices are
    pending and delivered; a leg that never sent anything is left out. Each count reads
    its own index."""
    counts: dict[str, dict[str, int]] = {}
    for leg, column in (("cstore", Result.forward_status), ("stow", Result.stow_status)):
        rows = session.execute(
            select(column, func.count()).where(column.is_not(None)).group_by(column)
        )
        by_state = {str(state): int(count) for state, count in rows}
        if by_state:
            counts[leg] = by_state
    undelivered = WebhookNotice.delivered_at.is_(None)
    rows = session.execute(select(undelivered, func.count()).group_by(undelivered))
    notices = {"pending" if pending else "delivered": int(n) for pending, n in rows}
    if notices:
        counts["webhook"] = notices
    return counts
