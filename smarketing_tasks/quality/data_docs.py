"""Data Docs: GX's HTML site of every suite and the recent validation runs, in a project-local folder.

Validation happens in ephemeral GX contexts spread over many tasks and workers, so the results are kept
where everything else is: ``smarketing.validation_runs.gx_result``. Building the docs loads the latest runs
of each suite from there into a throw-away file context and renders the site into
``<SMARKETING_DATA_DIR>/data_docs`` (setting ``data_docs_dir``). Nothing of GX's own state is kept.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import sqlalchemy as sa

from smarketing_tasks.quality.gx_runner import quiet_gx
from smarketing_tasks.quality.settings import QualitySettings
from smarketing_tasks.quality.suites import load_suite, suite_names

SITE_NAME = "smarketing"


def build_data_docs(engine: sa.Engine, settings: QualitySettings | None = None, *, runs_per_suite: int = 10,
                    target: Path | None = None) -> Path:
    """Render suites and the last ``runs_per_suite`` runs of each; returns the site's index.html."""
    quiet_gx()
    import great_expectations as gx
    from great_expectations.core import ExpectationSuite
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationSuiteValidationResultSchema,
    )
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    settings = settings or QualitySettings()
    site = (target or settings.data_docs_path()).resolve()
    site.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(site / "validations", ignore_errors=True)  # only the runs loaded below stay listed

    with engine.connect() as conn:
        runs = conn.execute(sa.text(
            "select suite, run_id, batch, gx_result, finished_at from ("
            "  select *, row_number() over (partition by suite order by finished_at desc) as recency"
            "  from smarketing.validation_runs where gx_result is not null) r "
            "where recency <= :n order by suite, finished_at"), {"n": runs_per_suite}).all()

    with tempfile.TemporaryDirectory(prefix="smarketing-gx-") as scratch:
        context = gx.get_context(mode="file", project_root_dir=scratch)
        for name in list(context.get_config().data_docs_sites or {}):
            context.delete_data_docs_site(name)
        context.add_data_docs_site(SITE_NAME, {
            "class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        for name in suite_names():
            context.suites.add_or_update(ExpectationSuite(**load_suite(name).gx_suite_dict()))
        schema = ExpectationSuiteValidationResultSchema()
        for suite, run_id, batch, gx_result, finished_at in runs:
            loaded = schema.load(gx_result)
            result = loaded if isinstance(loaded, ExpectationSuiteValidationResult) else \
                ExpectationSuiteValidationResult(**loaded)
            run = RunIdentifier(run_name=run_id, run_time=finished_at)
            meta = result.meta or {}
            result.meta = {**meta, "run_id": run, "batch_spec": {**(meta.get("batch_spec") or {}), "batch": batch}}
            key = ValidationResultIdentifier(ExpectationSuiteIdentifier(suite), run,
                                             batch_identifier=hashlib.sha256(batch.encode()).hexdigest()[:12])
            context.validation_results_store.set(key, result)
        context.build_data_docs(site_names=[SITE_NAME])
    return site / "index.html"
