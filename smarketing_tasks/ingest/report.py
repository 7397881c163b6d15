"""Run-level checks and summaries of ingestion results (plain dicts, as tasks pass them)."""

from __future__ import annotations

from collections.abc import Sequence


class QuarantineThresholdExceeded(RuntimeError):
    """Too many rows of a dataset were rejected: the source is likely broken, not a few rows."""


def check_quarantine_shares(results: Sequence[dict], max_share: float, min_rows: int = 0) -> None:
    """Fail when a dataset quarantined more than ``max_share`` of the rows it read.

    Datasets that read fewer than ``min_rows`` are exempt: an hourly run may read three reviews, and one
    bad one is a bad row, not a broken source (it is in smarketing.quarantine either way).
    """
    offenders = []
    for result in results:
        read = result["rows_read"]
        if read and read >= min_rows and result["rows_quarantined"] / read > max_share:
            offenders.append(
                f"{result['dataset']} from {result['source']}: {result['rows_quarantined']:,} of {read:,} rows "
                f"({result['rows_quarantined'] / read:.1%}) quarantined, above the {max_share:.0%} threshold"
            )
    if offenders:
        raise QuarantineThresholdExceeded(
            "ingestion quarantined too many rows; see smarketing.quarantine for reasons: " + "; ".join(offenders)
        )


def summarize(results: Sequence[dict]) -> dict:
    return {
        "datasets": {r["dataset"]: {k: r[k] for k in ("rows_read", "rows_loaded", "rows_quarantined")} for r in results},
        "window_end": max((r["window_end"] for r in results), default=None),
        "rows_loaded": sum(r["rows_loaded"] for r in results),
        "rows_quarantined": sum(r["rows_quarantined"] for r in results),
    }
