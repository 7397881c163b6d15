"""Generate docs/data-dictionary.md from the marts' catalog (sql/marts/schema.yml), the one source of truth.

    python -m smarketing_tasks.marts.dictionary --write   # regenerate the file
    python -m smarketing_tasks.marts.dictionary --check   # fail when the file is stale (CI, tests)
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from smarketing_tasks.marts.catalog import Mart, load_catalog
from smarketing_tasks.marts.settings import MartSettings
from smarketing_tasks.paths import PROJECT_ROOT

DICTIONARY_FILE = PROJECT_ROOT / "docs" / "data-dictionary.md"

# What marketers need to know about each setting that shapes a mart (defaults come from MartSettings).
SETTING_NOTES = {
    "word_of_mouth_reach": "People each unhappy customer tells. Seed 004 says 52, TARP's studies 9-15; the "
                           "default is scoring's, so customers' reasons and the KPI agree (set 12 for TARP's "
                           "middle). Drives `loop_kpis_daily.word_of_mouth_at_risk`.",
    "funnel_confidence": "Confidence level of the Wilson intervals in `outreach_funnel` and `outreach_variants`.",
    "testimonial_min_rating": "Lowest star rating of a consented review that may become a testimonial.",
    "quote_max_chars": "Longest testimonial quote, in characters.",
    "full_rebuild": "Rebuild every mart from the whole history on each publish, not only what changed "
                    "(`smarketing publish-marts --full` does it once).",
    "publish_lock_timeout_seconds": "How long publishing waits for running BI queries before it gives up "
                                    "(the previous version then stays).",
    "report_recipients": "Comma-separated staff addresses that get the HTML report by email after each scoring "
                         "run (empty: written to disk only).",
    "report_from": "Sender address of the report email.",
}

INTRO = """\
# Data dictionary: the marts in schema `marketing`

<!-- Generated from sql/marts/schema.yml by `python -m smarketing_tasks.marts.dictionary --write`.
     Edit the catalog, not this file: tests fail when the two disagree. -->

These tables are what smarketing-loop gives marketing and sales: who the advocates are, whom to call,
which quotes to use, what customers say per product, how the loop is doing day by day and which message
works. Open them in Metabase, Superset, Tableau, Power BI or a spreadsheet; every table and column carries
the description below as a database comment, so BI tools show it too.

**Fresh after every scoring run.** The `smarketing_score` DAG brings all marts up to date from the core
tables (the rows of the customers and days that changed since the last run, or everything) in a staging
schema and publishes them together in one transaction: a dashboard never sees a half-built mart, and a
failed run leaves the previous version in place. Each table's comment ends with "Data as of ..." (the
run's logical time, UTC); nothing after that moment is counted. `follow_ups` is a view: its `days_waiting`
is counted to that time when you read it.

**Read-only access.** Connect as a member of the role `smarketing_bi`, which can read schema `marketing`
and nothing else (no core tables, no contact data). An administrator gives a tool its own login:

```sql
create role metabase login password 'choose-one' in role smarketing_bi;
```

**No contact data.** No mart holds an email address or a phone number; customer-written text (quotes,
review excerpts) is redacted, and the publisher refuses to publish a mart in which anything looks like one.
Join `customer_id` to your CRM to reach people.

**Days and times** are UTC. Rates are fractions from 0 to 1; NPS runs from -100 to +100.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_mart(mart: Mart) -> str:
    lines = [f"## `marketing.{mart.name}`", "", mart.description, "",
             f"- **Grain:** {mart.grain}.",
             f"- **Unique key:** {', '.join(f'`{k}`' for k in mart.key)}.",
             f"- **Built by:** `sql/marts/{mart.sql_file}`.", "",
             "**Questions it answers**", ""]
    lines += [f"- {q}" for q in mart.questions]
    lines += ["", "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {c.type} | {_cell(c.description)} |" for c in mart.columns]
    lines += ["", "**Example SQL**", "", "```sql", mart.example_sql, "```", ""]
    return "\n".join(lines)


def render(catalog: list[Mart] | None = None) -> str:
    catalog = catalog or load_catalog()
    parts = [INTRO, "## Contents", ""]
    parts += [f"- [`marketing.{m.name}`](#marketing{m.name}): {m.grain}." for m in catalog]
    parts.append("- [Settings that shape the numbers](#settings-that-shape-the-numbers)\n")
    parts += [render_mart(m) for m in catalog]
    parts += ["## Settings that shape the numbers", "",
              "Set as environment variables `SMARKETING_<NAME>` or keys of the Airflow Variable "
              "`smarketing_settings` (see docs/operations.md).", "",
              "| setting | default | meaning |", "|---|---|---|"]
    for field in dataclasses.fields(MartSettings):
        default = f"`{field.default}`" if field.default != "" else "(empty)"
        parts.append(f"| `{field.name}` | {default} | {_cell(SETTING_NOTES.get(field.name, ''))} |")
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="write docs/data-dictionary.md")
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/data-dictionary.md is stale")
    parser.add_argument("--path", type=Path, default=DICTIONARY_FILE)
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        args.path.write_text(text)
        print(f"wrote {args.path}")
        return 0
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is stale: run python -m smarketing_tasks.marts.dictionary --write", file=sys.stderr)
            return 1
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
