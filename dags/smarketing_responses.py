"""
### smarketing_responses — reviews, social posts, referrals, opt-outs and bounces flow back in

Every hour, reads what customers did since the last load (a watermark per source and dataset in
`smarketing.watermarks`, minus an overlap for late deliveries) and up to this run's logical time:

* **reviews** (rating 1–5, title, body, sku or store, consent, incentivised flag, language noted by
  the source or detected with langdetect) from the shop (`smarketing_shop`) and, when connection
  `smarketing_review_platform` exists, a review platform's export (Judge.me CSV);
* **social posts and mentions** (platform, handle, text, followers, url, referral code);
* **email and SMS events** (unsubscribe, bounce hard/soft, complaint, open, click): unsubscribes, hard
  bounces and complaints enter `smarketing.suppressions` in the same transaction, so the very next
  outreach planning honours them;
* **referral redemptions**: orders whose discount code is another customer's referral code — only a
  referred customer's first order, the first referrer keeps the credit, self-referrals rejected.

Each review, post and referral is attributed to the ask that produced it: the signed link token first,
else the latest ask to the same customer (and order) within `attribution_window`. Bad rows go to
`smarketing.quarantine` with a reason per rule; text is stored as plain text (markup removed).
`audit_responses` then validates the rows loaded in this run's windows with the Great Expectations
suites `reviews`, `social_posts` and `email_events` (a breached suite fails without retries and
nothing is announced), and the Asset `smarketing://responses` is emitted for `smarketing_score`.

* **Connections**: `smarketing_shop`, `smarketing_warehouse`, optional `smarketing_review_platform`
  (extra `{"format": "judgeme", "path": "/exports/reviews.csv"}`).
* **Reruns and backfills** change nothing: upserts touch a row only when its content changed,
  quarantine is keyed by the raw row, suppressions keep the earliest opt-out.
* **Fails loudly** when a dataset quarantines more than `responses_max_quarantine_share` of its rows (default 20%,
  checked from `min_rows_for_share_check` rows read, default 100): rows stay loaded and quarantined,
  but no Asset event is emitted.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, get_current_context, task
from smarketing_airflow.assets import RESPONSES
from smarketing_airflow.defaults import DEFAULT_ARGS, tags
from smarketing_airflow.runtime import migrate_warehouse, run_time

RESPONSE_DATASETS = ["reviews", "social_posts", "email_events"]
PLATFORM_CONN_ID = "smarketing_review_platform"


def _ingest(source, dataset: str) -> dict:
    from smarketing_airflow.connections import settings, warehouse_engine

    from smarketing_tasks.marts import MartSettings
    from smarketing_tasks.marts.review_signals import SignalRules
    from smarketing_tasks.responses import ResponsesSettings, ingest_responses

    context = get_current_context()
    result = ingest_responses(source, dataset, warehouse_engine(), until=run_time(context),
                              run_id=context["run_id"], settings=settings(ResponsesSettings), progress=print,
                              signal_rules=SignalRules.from_settings(settings(MartSettings)))
    print(f"{dataset} from {source.name}: {result.rows_loaded:,} new or changed, "
          f"{result.rows_quarantined:,} quarantined of {result.rows_read:,} read in {result.seconds:.1f}s")
    return result.as_dict()


@dag(
    dag_id="smarketing_responses",
    schedule="@hourly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=tags("responses", "reviews", "referrals"),
    doc_md=__doc__,
)
def smarketing_responses():
    @task(map_index_template="{{ dataset }}")
    def ingest_shop(dataset: str) -> dict | None:
        """Load one response dataset from the shop connection for this run's window."""
        from airflow.sdk import BaseHook
        from smarketing_airflow.connections import SHOP_CONN_ID, connection_url

        from smarketing_tasks.responses.sources import shop_response_source

        conn = BaseHook.get_connection(SHOP_CONN_ID)
        extra = conn.extra_dejson if conn.extra else {}
        source = shop_response_source(extra, "" if extra.get("source") in ("export", "cdnow")
                                      else connection_url(SHOP_CONN_ID))
        if source is None:
            print(f"the shop source {extra.get('source')!r} carries no responses")
            return None
        return _ingest(source, dataset)

    @task
    def ingest_platform_reviews() -> dict | None:
        """Load reviews from a review platform's export, when connection smarketing_review_platform exists."""
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException

        from smarketing_tasks.responses.sources import platform_review_source

        try:
            conn = BaseHook.get_connection(PLATFORM_CONN_ID)
        except AirflowNotFoundException:
            print(f"no connection {PLATFORM_CONN_ID}: no review platform export to read")
            return None
        return _ingest(platform_review_source(conn.extra_dejson if conn.extra else {}, conn.host), "reviews")

    @task
    def redeem_referrals() -> dict:
        """Record referral redemptions among the orders up to this run's time; quarantine the rejected."""
        from smarketing_airflow.connections import settings, warehouse_engine

        from smarketing_tasks.responses import ResponsesSettings
        from smarketing_tasks.responses import redeem_referrals as redeem

        context = get_current_context()
        result = redeem(warehouse_engine(), until=run_time(context), run_id=context["run_id"],
                        settings=settings(ResponsesSettings))
        print(f"referrals: {result.rows_loaded:,} redeemed, {result.rows_quarantined:,} rejected "
              f"of {result.rows_read:,} candidate orders")
        return result.as_dict()

    @task
    def audit_responses(shop: list[dict | None], platform: dict | None) -> list[dict]:
        """Validate the loaded windows with the reviews, social_posts and email_events GX suites (before publish)."""
        from smarketing_airflow.connections import warehouse_engine
        from smarketing_airflow.quality import quality_gate, quality_settings

        from smarketing_tasks.quality.stages import audit_loaded

        context = get_current_context()
        with quality_gate():
            return audit_loaded(warehouse_engine(), [r for r in [*shop, platform] if r], run_id=context["run_id"],
                                run_time=run_time(context), settings=quality_settings())

    @task(outlets=[RESPONSES])
    def publish_responses(shop: list[dict | None], platform: dict | None, referrals: dict) -> dict:
        """Check quarantine shares, then announce new responses to scoring."""
        from smarketing_airflow.connections import settings

        from smarketing_tasks.ingest.report import check_quarantine_shares, summarize
        from smarketing_tasks.responses import ResponsesSettings

        config = settings(ResponsesSettings)
        loaded = [r for r in [*shop, platform] if r]
        check_quarantine_shares(loaded, config.responses_max_quarantine_share, config.min_rows_for_share_check)
        summary = summarize([*loaded, referrals])
        summary["datasets"] = {f"{r['dataset']}:{r['source']}": {k: r[k] for k in ("rows_read", "rows_loaded",
                                                                                   "rows_quarantined")}
                               for r in [*loaded, referrals]}
        get_current_context()["outlet_events"][RESPONSES].extra = summary
        print(summary)
        return summary

    migrated = migrate_warehouse()
    shop = ingest_shop.expand(dataset=RESPONSE_DATASETS)
    platform = ingest_platform_reviews()
    referrals = redeem_referrals()
    migrated >> [shop, platform, referrals]
    audit_responses(shop, platform) >> publish_responses(shop, platform, referrals)


smarketing_responses()
