"""The visual report after each scoring run: one self-contained HTML file from the marts.

``write_report(engine, out_dir, as_of)`` is what the score DAG calls after publishing the marts.
"""

from smarketing_tasks.report.render import render_report, report_path, write_report

__all__ = ["render_report", "report_path", "write_report"]
