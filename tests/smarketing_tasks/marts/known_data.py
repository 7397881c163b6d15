"""A small known data set in the core tables, written so that every mart number can be checked by hand.

The build runs as of AS_OF (2026-11-22 00:00 UTC); rows dated later must not reach any mart (rows stamped exactly AS_OF do: the run writes some itself). The comments
say what each row is for; tests/smarketing_tasks/marts/test_marts.py derives its expectations from them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

AS_OF = datetime(2026, 11, 22, tzinfo=UTC)

CUSTOMERS = [  # customer_id, country, created_at
    ("c1", "DE", "2026-01-01"), ("c2", "FR", "2026-02-01"), ("c3", "US", "2026-03-01"),
    ("c4", "DE", "2026-04-01"), ("c5", "GB", "2026-11-14"), ("c6", "US", "2026-11-21"),
]
CONTACTS = [  # contact data that must never reach a mart
    ("c1", "c1@example.com", "Ada", "+49 170 1111111"), ("c2", "c2@example.com", "Bo", "+33 6 12 34 56 78"),
]
ORDERS = [  # order_id, customer, ordered_at, status, delivered_at, total, discount_code
    ("o1", "c1", "2026-11-01 10:00", "delivered", "2026-11-03 12:00", 100, None),
    ("o2", "c2", "2026-11-01 15:00", "delivered", "2026-11-04 09:00", 50, None),
    ("o3", "c3", "2026-11-02 09:00", "delivered", "2026-11-04 18:00", 80, None),
    ("o4", "c4", "2026-11-03 11:00", "delivered", "2026-11-05 08:00", 30, None),
    ("o5", "c1", "2026-11-10 10:00", "delivered", "2026-11-12 08:00", 60, None),
    ("o6", "c5", "2026-11-15 10:00", "placed", None, 40, "REF-C1AAAAAA"),
    ("o7", "c6", "2026-11-22 08:00", "placed", None, 70, None),  # after AS_OF
]
ORDER_ITEMS = [  # order_id, line_no, sku, product_name, quantity, unit_price
    ("o1", 1, "SKU-A", "Alpine Jacket", 1, 80), ("o1", 2, "SKU-B", "Base Socks", 2, 10),
    ("o2", 1, "SKU-B", "Base Socks", 5, 10), ("o3", 1, "SKU-A", "Alpine Jacket", 1, 80),
    ("o4", 1, "SKU-C", "Camp Mug", 3, 10), ("o5", 1, "SKU-A", "Alpine Jacket v2", 1, 60),
    ("o6", 1, "SKU-B", "Base Socks", 4, 10), ("o7", 1, "SKU-D", "Dry Bag", 1, 70),
]
MESSAGES = [  # message_id, customer, order, kind, channel, variant, status, sent_at
    ("m1", "c1", "o1", "review_request", "email", "A", "sent", "2026-11-10 09:00"),
    ("m2", "c2", "o2", "review_request", "email", "B", "sent", "2026-11-10 09:05"),
    ("m3", "c3", "o3", "review_request", "email", "A", "sent", "2026-11-11 09:00"),
    ("m4", "c4", "o4", "review_request", "email", "B", "sent", "2026-11-11 10:00"),
    ("m5", "c3", "o3", "review_reminder", "email", "A", "sent", "2026-11-16 09:00"),
    ("m6", "c1", "o1", "share_ask", "email", "A", "sent", "2026-11-12 09:00"),
    ("m7", "c2", "o2", "review_reminder", "email", "A", "planned", None),  # never sent
    ("m8", "c6", "o7", "review_request", "email", "A", "sent", "2026-11-22 09:00"),  # after AS_OF
]
EMAIL_EVENTS = [  # event_id, customer, event_type, bounce_type, message_id, occurred_at
    ("e1", "c4", "bounce", "hard", "m4", "2026-11-11 10:05"),
    ("e2", "c1", "open", None, "m1", "2026-11-10 12:00"),
    ("e3", "c1", "click", None, "m1", "2026-11-10 12:01"),
    ("e4", "c2", "open", None, "m2", "2026-11-10 13:00"),
    ("e5", "c2", "unsubscribe", None, "m2", "2026-11-12 08:00"),
    ("e6", "c3", "complaint", None, "m3", "2026-11-11 11:00"),
]
SUPPRESSIONS = [("c2@example.com", "c2", "unsubscribe", "email_events", "2026-11-12 08:00")]
REVIEWS = [  # review_id, customer, order, sku, rating, title, body, consent, incentivized, message, created_at
    ("r1", "c1", "o1", "SKU-A", 5, "Warm and light",
     "I wore it on a glacier hike. Love it, the fabric is soft and warm and it packs small! "
     "Email me at c1@example.com.", True, False, "m1", "2026-11-10 18:00"),
    ("r2", "c2", "o2", "SKU-B", 4, None, "good", True, False, "m2", "2026-11-11 08:00"),  # lukewarm
    ("r3", "c3", "o3", "SKU-A", 2, "Broke", "The zipper broke after a week. Very disappointed.", False, False,
     "m5", "2026-11-17 10:00"),
    ("r4", "c4", "o4", "SKU-C", 3, None, "It was okay I guess", True, False, None, "2026-11-12 14:00"),  # lukewarm
    ("r5", "c1", "o5", "SKU-A", 5, None,
     "Second jacket for my partner. Excellent quality and great fit, call +49 170 1234567 for a chat",
     True, True, None, "2026-11-13 10:00"),
    ("r6", "c6", "o7", "SKU-D", 5, None, "Great bag, truly waterproof and light.", True, False, None,
     "2026-11-22 10:00"),  # after AS_OF
]
SOCIAL_POSTS = [  # post_id, platform, customer, referral_code, followers, posted_at, message_id
    ("p1", "instagram", "c1", "REF-C1AAAAAA", 1200, "2026-11-12 15:00", "m6"),
    ("p2", "x", "c3", None, 300, "2026-11-14 09:00", None),
]
REFERRALS = [("o6", "REF-C1AAAAAA", "c1", "c5", 40, "2026-11-15 10:00", "m6")]
SCORES = [  # customer, score_date, score, segment, is_lukewarm, nps_class, last_rating
    ("c1", "2026-11-15", 80.0, "advocate", False, "promoter", 5),
    ("c2", "2026-11-15", 55.0, "lukewarm", True, "passive", 4),
    ("c3", "2026-11-15", 40.0, "at_risk", False, "passive", None),
    ("c4", "2026-11-15", 50.0, "promising", False, None, None),
    ("c1", "2026-11-22", 92.5, "champion", False, "promoter", 5),
    ("c2", "2026-11-22", 50.0, "lukewarm", True, "passive", 4),
    ("c3", "2026-11-22", 20.0, "detractor", False, "detractor", 2),
    ("c4", "2026-11-22", 45.0, "lukewarm", True, "passive", 3),
    ("c5", "2026-11-22", 30.0, "silent", False, None, None),
    ("c1", "2026-11-23", 10.0, "detractor", False, "detractor", 1),  # after AS_OF's date
]
FOLLOW_UPS = [  # customer, reason, priority, team, excerpt, status, outcome, created_at, updated_at
    ("c2", "lukewarm", 2, "sales", "good", "open", None, "2026-11-15 06:00", "2026-11-15 06:00"),
    ("c3", "detractor", 1, "support", "The zipper broke after a week. Call me on 0171 2345 6789",
     "contacted", "replacement sent; wrote to c3@example.org", "2026-11-17 12:00", "2026-11-18 09:00"),
    ("c4", "lukewarm", 3, "customer_success", "It was okay I guess", "resolved",
     "mug too small, suggested the bigger size", "2026-11-15 06:00", "2026-11-20 10:00"),
    ("c5", "at_risk", 2, "sales", None, "open", None, "2026-11-22 01:00", "2026-11-22 01:00"),  # after AS_OF
]
REWARDS = [  # customer, reason, code, source_id, issued_at
    ("c1", "referral_converted", "RW-1", "o6", "2026-11-15 12:00"),
    ("c1", "social_share", "RW-2", "p1", "2026-11-12 16:00"),
    ("c1", "referral_converted", "RW-3", "o99", "2026-11-20 09:00"),
    ("c3", "social_share", "RW-4", "p2", "2026-11-23 09:00"),  # after AS_OF
]


def _ts(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def load_known_data(engine: sa.Engine) -> None:
    """Insert the known data set into a migrated, empty warehouse."""
    with engine.begin() as conn:
        def insert(sql: str, rows: list[dict]) -> None:
            conn.execute(sa.text(sql), rows)

        insert("insert into smarketing.customers (customer_id, country, created_at, updated_at, source) "
               "values (:id, :country, :created, :created, 'test')",
               [{"id": c, "country": k, "created": _ts(d + " 00:00")} for c, k, d in CUSTOMERS])
        insert("insert into smarketing.customer_contacts values (:id, :email, :name, :phone, now())",
               [{"id": c, "email": e, "name": n, "phone": p} for c, e, n, p in CONTACTS])
        insert("""insert into smarketing.orders (order_id, customer_id, ordered_at, status, delivered_at,
                      total_amount, currency, discount_code, updated_at, source)
                  values (:o, :c, :at, :status, :delivered, :total, 'EUR', :code, :at, 'test')""",
               [{"o": o, "c": c, "at": _ts(at), "status": s, "delivered": _ts(d), "total": t, "code": code}
                for o, c, at, s, d, t, code in ORDERS])
        insert("insert into smarketing.order_items values (:o, :line, :sku, :name, :qty, :price)",
               [{"o": o, "line": n, "sku": s, "name": p, "qty": q, "price": u} for o, n, s, p, q, u in ORDER_ITEMS])
        insert("""insert into smarketing.outreach_messages (message_id, idempotency_key, customer_id, order_id, kind,
                      channel, template_variant, status, due_at, expires_at, planned_at, sent_at)
                  values (:m, :m, :c, :o, :kind, :channel, :variant, :status, :due, :due + interval '30 days',
                          :due, :sent)""",
               [{"m": m, "c": c, "o": o, "kind": k, "channel": ch, "variant": v, "status": s,
                 "sent": _ts(sent), "due": _ts(sent or "2026-11-20 09:00")}
                for m, c, o, k, ch, v, s, sent in MESSAGES])
        insert("""insert into smarketing.email_events (event_id, customer_id, event_type, bounce_type, message_id,
                      occurred_at, source) values (:e, :c, :t, :b, :m, :at, 'test')""",
               [{"e": e, "c": c, "t": t, "b": b, "m": m, "at": _ts(at)} for e, c, t, b, m, at in EMAIL_EVENTS])
        insert("insert into smarketing.suppressions values (:email, :c, :reason, :source, :at)",
               [{"email": e, "c": c, "reason": r, "source": s, "at": _ts(at)} for e, c, r, s, at in SUPPRESSIONS])
        insert("""insert into smarketing.reviews (review_id, customer_id, order_id, sku, rating, title, body,
                      consent_to_publish, incentivized, language, message_id, created_at, source)
                  values (:r, :c, :o, :sku, :rating, :title, :body, :consent, :inc, 'en', :m, :at, 'test')""",
               [{"r": r, "c": c, "o": o, "sku": s, "rating": g, "title": t, "body": b, "consent": k, "inc": i,
                 "m": m, "at": _ts(at)} for r, c, o, s, g, t, b, k, i, m, at in REVIEWS])
        insert("""insert into smarketing.social_posts (post_id, platform, customer_id, referral_code, followers,
                      posted_at, message_id, source) values (:p, :pl, :c, :code, :f, :at, :m, 'test')""",
               [{"p": p, "pl": pl, "c": c, "code": code, "f": f, "at": _ts(at), "m": m}
                for p, pl, c, code, f, at, m in SOCIAL_POSTS])
        insert("""insert into smarketing.referrals (referred_order_id, referral_code, referrer_customer_id,
                      referred_customer_id, revenue, redeemed_at, message_id)
                  values (:o, :code, :ref, :new, :rev, :at, :m)""",
               [{"o": o, "code": code, "ref": r, "new": n, "rev": v, "at": _ts(at), "m": m}
                for o, code, r, n, v, at, m in REFERRALS])
        insert("""insert into smarketing.advocate_scores (customer_id, score_date, advocate_score, segment,
                      is_lukewarm, nps_class, last_rating, reasons, scored_at)
                  values (:c, :d, :s, :seg, :luke, :nps, :rating, :reasons, :d)""",
               [{"c": c, "d": _ts(d + " 00:00").date(), "s": s, "seg": seg, "luke": lw, "nps": n, "rating": r,
                 "reasons": f"{seg} on {d}"} for c, d, s, seg, lw, n, r in SCORES])
        # Each date above is a full scoring run; the scorer records the whole base's counts in score_runs.
        insert("""insert into smarketing.score_runs (score_date, as_of, mode, model_date, refitted, changed, due,
                      rescored, customers_scored, promoters, passives, detractors, advocates, lukewarm,
                      segment_champion, segment_advocate, segment_promising, segment_lukewarm, segment_at_risk,
                      segment_detractor, segment_silent, unhappy_customers)
                  select score_date, score_date::timestamptz, 'full', score_date, true, count(*), 0, count(*),
                      count(*), count(*) filter (where nps_class = 'promoter'),
                      count(*) filter (where nps_class = 'passive'), count(*) filter (where nps_class = 'detractor'),
                      count(*) filter (where segment in ('champion', 'advocate')), count(*) filter (where is_lukewarm),
                      count(*) filter (where segment = 'champion'), count(*) filter (where segment = 'advocate'),
                      count(*) filter (where segment = 'promising'), count(*) filter (where segment = 'lukewarm'),
                      count(*) filter (where segment = 'at_risk'), count(*) filter (where segment = 'detractor'),
                      count(*) filter (where segment = 'silent'),
                      count(*) filter (where nps_class = 'detractor' or is_lukewarm)
                  from smarketing.advocate_scores group by score_date""", [{}])
        insert("""insert into smarketing.follow_ups (customer_id, reason, priority, owner_team, review_excerpt,
                      suggested_questions, status, outcome, created_at, updated_at)
                  values (:c, :reason, :p, :team, :excerpt, 'What would have made it great?', :status, :outcome,
                          :created, :updated)""",
               [{"c": c, "reason": r, "p": p, "team": t, "excerpt": e, "status": s, "outcome": o,
                 "created": _ts(cr), "updated": _ts(up)} for c, r, p, t, e, s, o, cr, up in FOLLOW_UPS])
        insert("insert into smarketing.rewards values (:c, :reason, :code, :source, :at)",
               [{"c": c, "reason": r, "code": code, "source": s, "at": _ts(at)} for c, r, code, s, at in REWARDS])
