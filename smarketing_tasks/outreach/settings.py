"""Settings of outreach (``smarketing_outreach`` and ``smarketing serve``), each with a working default.

Read like every stage's settings: ``SMARKETING_<NAME>`` environment variables, then the Airflow JSON
Variable ``smarketing_settings``. Durations are whole days or seconds, named so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class OutreachSettings:
    # --- when to ask (DESIGN.md section 2: trigger on delivery, with a fallback) ---
    review_delay_days: int = 7  # review ask this long after delivery
    ship_fallback_days: int = 10  # no delivery event: ask this long after shipping
    order_fallback_days: int = 14  # neither delivered nor shipped: ask this long after ordering
    reminder_delay_days: int = 5  # the one reminder, this long after the request was due
    request_ttl_days: int = 7  # a message not sent within this after it was due expires
    ask_window_days: int = 7  # asks whose moment passed longer ago than this (or than request_ttl_days) are never planned
    plan_incremental: bool = True  # read only asks due since the last planning run and orders changed since; false: the whole window every run
    plan_overlap_hours: int = 1  # an incremental run re-reads this much before the last run's moment and order watermark (late commits)
    # --- respect the customer's time ---
    global_cap: int = 3  # at most this many messages per person across all flows ...
    cap_window_days: int = 30  # ... within this many days (a message exactly this old no longer counts)
    cooldown_days: int = 120  # no new ask of the same kind to the same person within this many days
    # --- consent and channels ---
    soft_opt_in: bool = False  # allow review asks (never share asks) to buyers without marketing consent
    preferred_channel: str = "email"  # email | sms (sms only with SMS consent and a phone; else email)
    sms_start_hour: int = 8  # SMS only from this local hour ...
    sms_end_hour: int = 21  # ... until this local hour (exclusive)
    default_time_zone: str = "UTC"  # for customers without a (valid) time zone
    # --- social and referral asks (may target happy customers; never the public-review ask) ---
    share_asks: bool = True  # plan share asks with the customer's referral code
    share_min_rating: int = 4  # a recent review with at least this rating ...
    share_min_sentiment: float = 0.05  # ... and positive text (scoring's VADER compound at least this) ...
    share_review_window_days: int = 30  # ... written within this many days
    share_repeat_orders: int = 2  # or a repeat buyer with at least this many delivered orders
    share_delay_days: int = 3  # the share ask this long after the review (or after the review ask)
    # --- incentives: offered to every recipient of a review ask alike, never by rating ---
    review_incentive: str = ""  # e.g. "10% off your next order"; empty = no incentive
    # --- content and links ---
    brand_name: str = "Demo Shop"
    from_address: str = "Demo Shop <hello@shop.example>"
    postal_address: str = "Demo Shop Ltd, 1 Example Street, 10115 Berlin, Germany"  # footer (CAN-SPAM, UWG)
    links_base_url: str = "http://127.0.0.1:8765"  # the link service (smarketing serve)
    review_url: str = "https://shop.example/review?order={order_id}&t={token}"  # where /r/ redirects
    share_url: str = ("https://shop.example/?ref={referral_code}&utm_source=customer_share"
                      "&utm_medium=referral&utm_campaign={kind}&utm_content={variant}")  # where /s/ redirects
    link_ttl_days: int = 60  # review/share/unsubscribe links expire this long after the message was due
    link_signing_key: str = ""  # empty: generated once and kept in smarketing.secrets
    link_signing_keys_retired: str = ""  # comma-separated keys of before a rotation: their links still verify
    templates_dir: str = ""  # empty: the project's templates/outreach
    # --- sending ---
    email_transport: str = "smtp"  # smtp (connection smarketing_smtp) | sink (Maildir, no network)
    sink_dir: str = ""  # Maildir for the sink; empty: <SMARKETING_DATA_DIR>/mailbox
    webhook_url: str = ""  # SMS/ESP webhook endpoint; empty: SMS messages go to the sink
    webhook_secret: str = ""  # HMAC key for X-Smarketing-Signature; empty: the link-signing key
    batch_size: int = 500  # messages claimed per transaction
    connections: int = 4  # parallel lanes per sender, each with its own SMTP connection (the crash window
    #                       is at most this many messages in flight)
    send_shards: int = 1  # send tasks per channel, which workers run at once; they claim from one queue
    #                       (SKIP LOCKED) and split the channel's rate limits
    max_attempts: int = 5  # attempts per message, over all runs, before it is marked failed
    send_retries: int = 3  # attempts within one run; then the channel counts as down and the run fails
    retry_base_seconds: float = 0.5  # backoff: base * 2**attempt, capped below
    retry_max_seconds: float = 30.0
    email_rate_per_second: float = 0.0  # per-channel rate limit; 0 = unlimited
    webhook_rate_per_second: float = 20.0
    claim_lease_seconds: int = 900  # a claimed message not finished within this returns to the queue
    db_retry_attempts: int = 8  # recording a result survives this many lost warehouse connections

    def days(self, name: str) -> timedelta:
        return timedelta(days=getattr(self, f"{name}_days"))
