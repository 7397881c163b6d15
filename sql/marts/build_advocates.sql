-- marketing.advocates
-- Grain: one row per customer who has been scored: the customer's latest advocate score on or before the
-- build's as-of date, with the segment of the run before it, so movement between segments shows.
-- Parameters: :as_of (timestamptz, the run's logical time); :full (boolean) or else only the customers in
-- :changed_customers (text[]), for an incremental publish. Session time zone is UTC.

with

scores as (
    select *
    from smarketing.advocate_scores
    where score_date <= cast(:as_of as timestamptz)::date
      and (cast(:full as boolean) or customer_id = any(cast(:changed_customers as text[])))
),

-- the previous run's segment and score by lead() over the same window: no self-join of the ranked rows
-- (a join the planner misjudged into a nested loop for an incremental publish's few customers)
ranked as (
    select
        scores.*,
        lead(segment) over runs as previous_segment,
        lead(advocate_score) over runs as previous_advocate_score
    from scores
    window runs as (partition by customer_id order by score_date desc)
),

-- each customer's latest run by distinct on, not a filter on row_number(): the planner guessed 0.5% of the
-- rows for such a filter (602 of 120,481) and hashed them for both joins below, spilling to disk
latest as (
    select distinct on (customer_id) * from ranked order by customer_id, score_date desc
),

waiting_follow_ups as (
    select distinct customer_id
    from smarketing.follow_ups
    where status in ('open', 'contacted')
      and created_at <= :as_of
      and (cast(:full as boolean) or customer_id = any(cast(:changed_customers as text[])))
),

final as (
    select
        latest.customer_id,
        latest.segment,
        latest.advocate_score,
        latest.previous_segment,
        latest.advocate_score - latest.previous_advocate_score as score_change,
        latest.is_lukewarm,
        latest.nps_class,
        latest.last_rating,
        latest.sentiment,
        latest.reviews_count,
        latest.social_posts_count,
        latest.social_reach,
        latest.referrals_count,
        latest.referral_revenue,
        latest.orders_count,
        latest.lifetime_value,
        latest.recency_days,
        latest.expected_purchases_90d,
        latest.predicted_value_90d,
        customers.country,
        customers.created_at as customer_since,
        waiting_follow_ups.customer_id is not null as has_open_follow_up,
        latest.reasons,
        latest.score_date,
        latest.scored_at
    from latest
    left join smarketing.customers as customers on customers.customer_id = latest.customer_id
    left join waiting_follow_ups on waiting_follow_ups.customer_id = latest.customer_id
)

select * from final
