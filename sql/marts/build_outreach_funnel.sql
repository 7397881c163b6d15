-- marketing.outreach_funnel
-- Grain: one row per send day (UTC), message kind, channel and template variant, over messages sent up to
-- the as-of time. A message counts as responded when a review, social post or referral is attributed to it
-- (their message_id); the response rate is over delivered messages, with a Wilson score interval
-- (z for :confidence, both passed in by the build).
-- Parameters: :as_of (timestamptz), :z (double precision), :confidence (double precision); :full (boolean) or
-- else only the send days in :changed_send_days (date[]) for an incremental publish: their messages, and the events
-- and responses of those messages (by message_id).

with

sent_messages as (
    select message_id, kind, channel, template_variant, sent_at::date as day
    from smarketing.outreach_messages
    where status = 'sent'
      and sent_at <= :as_of
      and (cast(:full as boolean) or (sent_at at time zone 'UTC')::date = any(cast(:changed_send_days as date[])))
),

message_events as (
    select
        message_id,
        bool_or(event_type = 'bounce') as bounced,
        bool_or(event_type = 'open') as opened,
        bool_or(event_type = 'click') as clicked,
        bool_or(event_type = 'unsubscribe') as unsubscribed,
        bool_or(event_type = 'complaint') as complained
    from smarketing.email_events
    where message_id is not null
      and occurred_at <= :as_of
      and (cast(:full as boolean) or message_id in (select message_id from sent_messages))
    group by message_id
),

responses as (
    select message_id, 'review' as response_kind
    from smarketing.reviews
    where message_id is not null and created_at <= :as_of
      and (cast(:full as boolean) or message_id in (select message_id from sent_messages))
    union all
    select message_id, 'social_post'
    from smarketing.social_posts
    where message_id is not null and posted_at <= :as_of
      and (cast(:full as boolean) or message_id in (select message_id from sent_messages))
    union all
    select message_id, 'referral'
    from smarketing.referrals
    where message_id is not null and redeemed_at <= :as_of
      and (cast(:full as boolean) or message_id in (select message_id from sent_messages))
),

message_responses as (
    select
        message_id,
        count(*) filter (where response_kind = 'review') as reviews,
        count(*) filter (where response_kind = 'social_post') as social_posts,
        count(*) filter (where response_kind = 'referral') as referrals
    from responses
    group by message_id
),

per_message as (
    select
        sent_messages.*,
        -- an answered message evidently arrived, whatever a (soft) bounce event said
        coalesce(message_events.bounced, false) and message_responses.message_id is null as bounced,
        coalesce(message_events.opened, false) as opened,
        coalesce(message_events.clicked, false) as clicked,
        coalesce(message_events.unsubscribed, false) as unsubscribed,
        coalesce(message_events.complained, false) as complained,
        message_responses.message_id is not null as responded,
        coalesce(message_responses.reviews, 0) as reviews,
        coalesce(message_responses.social_posts, 0) as social_posts,
        coalesce(message_responses.referrals, 0) as referrals
    from sent_messages
    left join message_events on message_events.message_id = sent_messages.message_id
    left join message_responses on message_responses.message_id = sent_messages.message_id
),

counts as (
    select
        day,
        kind,
        channel,
        template_variant,
        count(*)::integer as sent,
        count(*) filter (where bounced)::integer as bounced,
        count(*) filter (where not bounced)::integer as delivered,
        count(*) filter (where not bounced and opened)::integer as opened,
        count(*) filter (where not bounced and clicked)::integer as clicked,
        count(*) filter (where responded)::integer as responded,
        sum(reviews)::integer as reviews,
        sum(social_posts)::integer as social_posts,
        sum(referrals)::integer as referrals,
        count(*) filter (where unsubscribed)::integer as unsubscribed,
        count(*) filter (where complained)::integer as complained
    from per_message
    group by day, kind, channel, template_variant
),

final as (
    select
        day,
        kind,
        channel,
        template_variant,
        sent,
        bounced,
        delivered,
        opened,
        clicked,
        responded,
        reviews,
        social_posts,
        referrals,
        unsubscribed,
        complained,
        wilson.rate as response_rate,
        wilson.low as ci_low,
        wilson.high as ci_high,
        cast(:confidence as double precision) as confidence_level
    from counts
    cross join lateral smarketing.wilson_interval(responded, delivered, cast(:z as double precision)) as wilson
)

select * from final
