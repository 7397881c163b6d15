"""The Assets that chain the loop's DAGs (contract: DESIGN.md section 3)."""

from airflow.sdk import Asset

PURCHASES = Asset(name="smarketing_purchases", uri="smarketing://purchases", group="smarketing")
OUTREACH = Asset(name="smarketing_outreach", uri="smarketing://outreach", group="smarketing")
RESPONSES = Asset(name="smarketing_responses", uri="smarketing://responses", group="smarketing")
MARTS = Asset(name="smarketing_marts", uri="smarketing://marts", group="smarketing")
