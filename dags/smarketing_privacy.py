"""
### smarketing_privacy — erase a customer on request; keep raw contact data only as long as configured

**Erasure on request** (right to erasure): trigger this DAG with params `customer_id` and/or `email`
(and `request_ref`, the ticket id), from the UI's *Trigger DAG w/ config* or the REST API:

```
POST /api/v2/dags/smarketing_privacy/dagRuns
{"logical_date": null, "conf": {"email": "jane@example.com", "request_ref": "DSR-1042"}}
```

Every row about the person goes from schemas `smarketing` and `marketing` (core tables, contacts,
outbox and link clicks, responses, scores, follow-ups, rewards, marts); contact values inside JSON
samples are replaced by `[erased]`. `smarketing.erasures` keeps proof with hashes and counts only; the
address stays on the suppression list with reason `erasure` unless `erasure_keeps_suppression` is off.

**Every day** (and after each erasure) it also:

* erases again anyone whose erased id came back through ingestion;
* deletes contact details (email, name, phone) of customers inactive for `contact_retention_days`
  (default 730) and strips contact values from email events of that age and from quarantined raw rows
  older than `quarantine_contact_retention_days` (default 90).

* **Connections**: `smarketing_warehouse`.
* **Reruns** are safe: an erasure or a retention sweep that already ran changes nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task
from smarketing_airflow.defaults import DEFAULT_ARGS, tags
from smarketing_airflow.runtime import migrate_warehouse, run_time


@dag(
    dag_id="smarketing_privacy",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=tags("privacy", "operations"),
    doc_md=__doc__,
    params={
        "customer_id": Param(None, type=["null", "string"], description="customer to erase (the shop's id)"),
        "email": Param(None, type=["null", "string"], description="address to erase (finds the customer too)"),
        "request_ref": Param(None, type=["null", "string"], description="your ticket or request id"),
    },
)
def smarketing_privacy():
    @task
    def erase_requested() -> dict:
        """Erase the customer named in the run's params, if any (scheduled runs name nobody)."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.privacy import PrivacySettings, erase_customer

        context = get_current_context()
        params = context["params"]
        if not (params.get("customer_id") or params.get("email")):
            print("no erasure requested in this run's params")
            return {"requested": False}
        try:
            result = erase_customer(
                warehouse_engine(), requested_at=run_time(context), customer_id=params.get("customer_id"),
                email=params.get("email"), request_ref=params.get("request_ref"), run_id=context["run_id"],
                keep_suppression=settings(PrivacySettings).erasure_keeps_suppression,
            )
        except ValueError as error:  # a malformed request: retrying cannot fix it
            from airflow.sdk.exceptions import AirflowFailException

            raise AirflowFailException(f"erasure request refused: {error}") from error
        summary = {"requested": True, **result.as_dict()}
        print(f"erasure {params.get('request_ref') or ''}: {summary}")
        return summary

    @task
    def erase_returned() -> int:
        """Erase again customers whose erased id came back through ingestion."""
        from smarketing_airflow.connections import warehouse_engine

        from smarketing_tasks.privacy import reerase_returned

        context = get_current_context()
        count = reerase_returned(warehouse_engine(), now=run_time(context), run_id=context["run_id"])
        print(f"{count} erased customer(s) came back and were erased again")
        return count

    @task
    def apply_retention() -> dict:
        """Delete or strip raw contact data older than the configured retention."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.privacy import PrivacySettings
        from smarketing_tasks.privacy import apply_retention as sweep

        touched = sweep(warehouse_engine(), now=run_time(get_current_context()), settings=settings(PrivacySettings))
        print(f"retention: {touched}")
        return touched

    migrate_warehouse() >> erase_requested() >> erase_returned() >> apply_retention()


smarketing_privacy()
