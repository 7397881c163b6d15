-- marketing.loop_kpis_daily
-- Grain: one row per calendar day (UTC) from the first recorded activity to the last complete day before the
-- as-of time. Activity columns count events of that day; customer-base columns (NPS, segments, lukewarm,
-- word of mouth at risk) come from the latest scoring run dated on or before the next morning, because a run
-- dated D scores everything up to the start of D.
-- Parameters: :as_of (timestamptz), :word_of_mouth_reach (integer); :full (boolean) or else an incremental
-- publish: only the days in :changed_days (date[]), the days after :known_last_day and before :known_first_day
-- (the published mart's range; activity before it is a changed day). Each day's counts come from rows of that
-- day only, so every source is read for those days alone (by the day indexes of migration 0018).
-- Session time zone is UTC.

with

bounds as (
    select (cast(:as_of as timestamptz) - interval '1 microsecond')::date as last_day
),

-- the source CTEs are read by more than one part below: not materialized, each part reads the table (a
-- full build wrote all 1,000,399 orders to a 117 MB tuplestore on disk at 1M purchases, then read it twice)
orders as not materialized (
    select * from smarketing.orders
    where ordered_at <= :as_of
      and (cast(:full as boolean) or (ordered_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),

sent_messages as not materialized (
    select * from smarketing.outreach_messages
    where status = 'sent' and sent_at <= :as_of
      and (cast(:full as boolean) or (sent_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),

reviews as not materialized (
    select * from smarketing.reviews
    where created_at <= :as_of
      and (cast(:full as boolean) or (created_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),

social_posts as not materialized (
    select * from smarketing.social_posts
    where posted_at <= :as_of
      and (cast(:full as boolean) or (posted_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),

referrals as not materialized (
    select * from smarketing.referrals
    where redeemed_at <= :as_of
      and (cast(:full as boolean) or (redeemed_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),


-- the orders' first day by their day index (one probe; the session's time zone is UTC, so it is the day of
-- min(ordered_at)): min(ordered_at) read all 1,000,399 orders at 1M purchases
first_activity as (
    select min(first_day) as first_day
    from (
        select min((ordered_at at time zone 'UTC')::date) as first_day from orders
        union all select min(sent_at)::date from sent_messages
        union all select min(created_at)::date from reviews
        union all select min(posted_at)::date from social_posts
        union all select min(redeemed_at)::date from referrals
        union all select cast(:known_first_day as date)
    ) as firsts
),

all_days as (
    select generate_series(first_activity.first_day, bounds.last_day, interval '1 day')::date as day
    from first_activity
    cross join bounds
    where first_activity.first_day <= bounds.last_day
),

days as (
    select day
    from all_days
    where cast(:full as boolean)
       or day = any(cast(:changed_days as date[]))
       or day > coalesce(cast(:known_last_day as date), '-infinity')
       or day < cast(:known_first_day as date)
),

orders_daily as (
    select ordered_at::date as day, count(*) as purchases, sum(total_amount) as revenue
    from orders
    group by 1
),

deliveries_daily as (
    select delivered_at::date as day, count(*) as deliveries
    from smarketing.orders
    where delivered_at <= :as_of
      and (cast(:full as boolean) or (delivered_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
    group by 1
),

sends_daily as (
    select
        sent_at::date as day,
        count(*) filter (where kind = 'review_request') as requests_sent,
        count(*) filter (where kind = 'review_reminder') as reminders_sent,
        count(*) filter (where kind in ('share_ask', 'referral_ask')) as share_asks_sent
    from sent_messages
    group by 1
),

-- a request is answered when its order (or the request itself) got a review after it was sent; two equi-joins
-- and a union instead of one OR-ed correlated subquery, so the planner can hash them; the answering review
-- may be of any day (answers count on the request's day)
answered_requests as (
    select requests.message_id, requests.sent_at
    from sent_messages as requests
    join smarketing.reviews as reviews on reviews.order_id = requests.order_id
    where requests.kind = 'review_request'
      and reviews.created_at >= requests.sent_at
      and reviews.created_at <= :as_of
    union
    select requests.message_id, requests.sent_at
    from sent_messages as requests
    join smarketing.reviews as reviews on reviews.message_id = requests.message_id
    where requests.kind = 'review_request'
      and reviews.created_at >= requests.sent_at
      and reviews.created_at <= :as_of
),

answered_daily as (
    select sent_at::date as day, count(*) as requests_answered
    from answered_requests
    group by 1
),

reviews_daily as (
    select created_at::date as day, count(*) as reviews_received, avg(rating) as avg_rating
    from reviews
    group by 1
),

social_daily as (
    select posted_at::date as day, count(*) as social_posts, sum(coalesce(followers, 0)) as social_reach
    from social_posts
    group by 1
),

referrals_daily as (
    select redeemed_at::date as day, count(*) as referrals, sum(revenue) as referral_revenue
    from referrals
    group by 1
),

unsubscribes_daily as (
    select suppressed_at::date as day, count(*) as unsubscribes
    from smarketing.suppressions
    where reason = 'unsubscribe' and suppressed_at <= :as_of
      and (cast(:full as boolean) or (suppressed_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
    group by 1
),

email_events_daily as (
    select
        occurred_at::date as day,
        count(*) filter (where event_type = 'complaint') as complaints,
        count(*) filter (where event_type = 'bounce' and bounce_type = 'hard') as hard_bounces
    from smarketing.email_events
    where occurred_at <= :as_of
      and (cast(:full as boolean) or (occurred_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
    group by 1
),

follow_ups_opened_daily as (
    select created_at::date as day, count(*) as follow_ups_opened
    from smarketing.follow_ups
    where created_at <= :as_of
      and (cast(:full as boolean) or (created_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
    group by 1
),

follow_ups_closed_daily as (
    select updated_at::date as day, count(*) as follow_ups_closed
    from smarketing.follow_ups
    where status in ('resolved', 'dismissed') and updated_at <= :as_of
      and (cast(:full as boolean) or (updated_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
    group by 1
),

score_runs as (
    -- Counts of the whole customer base as each scoring run left it (an incremental run writes rows only for
    -- the customers it rescored, so counting smarketing.advocate_scores by date would undercount).
    select
        score_date, customers_scored, promoters, passives, detractors, advocates, lukewarm,
        segment_champion, segment_advocate, segment_promising, segment_lukewarm, segment_at_risk,
        segment_detractor, segment_silent, unhappy_customers
    from smarketing.score_runs
    where score_date <= cast(:as_of as timestamptz)::date and customers_scored is not null
),


day_runs as (
    select
        days.day,
        (select max(score_runs.score_date) from score_runs where score_runs.score_date <= days.day + 1)
            as scores_taken_on
    from days
),

final as (
    select
        days.day,
        coalesce(orders_daily.purchases, 0) as purchases,
        coalesce(orders_daily.revenue, 0) as revenue,
        coalesce(deliveries_daily.deliveries, 0) as deliveries,
        coalesce(sends_daily.requests_sent, 0) as requests_sent,
        coalesce(sends_daily.reminders_sent, 0) as reminders_sent,
        coalesce(sends_daily.share_asks_sent, 0) as share_asks_sent,
        coalesce(reviews_daily.reviews_received, 0) as reviews_received,
        coalesce(answered_daily.requests_answered, 0) as requests_answered,
        answered_daily.requests_answered::double precision / nullif(sends_daily.requests_sent, 0)
            as response_rate,
        reviews_daily.avg_rating,
        coalesce(social_daily.social_posts, 0) as social_posts,
        coalesce(social_daily.social_reach, 0) as social_reach,
        coalesce(referrals_daily.referrals, 0) as referrals,
        coalesce(referrals_daily.referral_revenue, 0) as referral_revenue,
        coalesce(unsubscribes_daily.unsubscribes, 0) as unsubscribes,
        coalesce(email_events_daily.complaints, 0) as complaints,
        coalesce(email_events_daily.hard_bounces, 0) as hard_bounces,
        coalesce(follow_ups_opened_daily.follow_ups_opened, 0) as follow_ups_opened,
        coalesce(follow_ups_closed_daily.follow_ups_closed, 0) as follow_ups_closed,
        day_runs.scores_taken_on,
        score_runs.customers_scored,
        score_runs.promoters,
        score_runs.passives,
        score_runs.detractors,
        round(100.0 * (score_runs.promoters - score_runs.detractors)
              / nullif(score_runs.promoters + score_runs.passives + score_runs.detractors, 0), 1) as nps,
        score_runs.advocates,
        score_runs.lukewarm,
        score_runs.lukewarm::double precision
            / nullif(score_runs.promoters + score_runs.passives + score_runs.detractors, 0) as lukewarm_share,
        score_runs.segment_champion,
        score_runs.segment_advocate,
        score_runs.segment_promising,
        score_runs.segment_lukewarm,
        score_runs.segment_at_risk,
        score_runs.segment_detractor,
        score_runs.segment_silent,
        score_runs.unhappy_customers,
        cast(:word_of_mouth_reach as integer) as word_of_mouth_reach_per_customer,
        score_runs.unhappy_customers * cast(:word_of_mouth_reach as bigint) as word_of_mouth_at_risk
    from days
    join day_runs on day_runs.day = days.day
    left join score_runs on score_runs.score_date = day_runs.scores_taken_on
    left join orders_daily on orders_daily.day = days.day
    left join deliveries_daily on deliveries_daily.day = days.day
    left join sends_daily on sends_daily.day = days.day
    left join answered_daily on answered_daily.day = days.day
    left join reviews_daily on reviews_daily.day = days.day
    left join social_daily on social_daily.day = days.day
    left join referrals_daily on referrals_daily.day = days.day
    left join unsubscribes_daily on unsubscribes_daily.day = days.day
    left join email_events_daily on email_events_daily.day = days.day
    left join follow_ups_opened_daily on follow_ups_opened_daily.day = days.day
    left join follow_ups_closed_daily on follow_ups_closed_daily.day = days.day
)

select * from final
