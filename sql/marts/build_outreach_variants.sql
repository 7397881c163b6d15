-- marketing.outreach_variants
-- Grain: one row per message kind, channel and template variant sent up to the as-of time: the funnel summed
-- over all days and over the last 30, with Wilson intervals of the summed counts, and how each variant stands
-- against the best one of its kind and channel. Built from outreach_funnel of the same build (it is built
-- first, in the staging schema), so both marts always agree.
-- Parameters: :as_of (timestamptz), :z (double precision), :confidence (double precision).

with

funnel as (
    select * from marketing_build.outreach_funnel
),

totals as (
    select
        kind,
        channel,
        template_variant,
        min(day) as first_sent_on,
        max(day) as last_sent_on,
        sum(sent)::integer as sent,
        sum(delivered)::integer as delivered,
        sum(responded)::integer as responded,
        coalesce(sum(delivered) filter (where day > cast(:as_of as timestamptz)::date - 30), 0)::integer
            as delivered_30d,
        coalesce(sum(responded) filter (where day > cast(:as_of as timestamptz)::date - 30), 0)::integer
            as responded_30d
    from funnel
    group by kind, channel, template_variant
),

intervals as (
    select
        totals.*,
        overall.rate as response_rate,
        overall.low as ci_low,
        overall.high as ci_high,
        recent.rate as response_rate_30d,
        recent.low as ci_low_30d,
        recent.high as ci_high_30d
    from totals
    cross join lateral smarketing.wilson_interval(totals.responded, totals.delivered, cast(:z as double precision))
        as overall
    cross join lateral smarketing.wilson_interval(totals.responded_30d, totals.delivered_30d,
                                                  cast(:z as double precision)) as recent
),

leaders as (
    select distinct on (kind, channel)
        kind, channel, template_variant as leader_variant, response_rate as leader_rate, ci_low as leader_ci_low
    from intervals
    where response_rate is not null
    order by kind, channel, response_rate desc, ci_low desc, template_variant
),

final as (
    select
        intervals.kind,
        intervals.channel,
        intervals.template_variant,
        intervals.first_sent_on,
        intervals.last_sent_on,
        intervals.sent,
        intervals.delivered,
        intervals.responded,
        intervals.response_rate,
        intervals.ci_low,
        intervals.ci_high,
        intervals.delivered_30d,
        intervals.responded_30d,
        intervals.response_rate_30d,
        intervals.ci_low_30d,
        intervals.ci_high_30d,
        leaders.leader_variant,
        coalesce(intervals.response_rate = leaders.leader_rate, false) as is_leader,
        coalesce(intervals.ci_high < leaders.leader_ci_low, false) as is_clearly_behind,
        cast(:confidence as double precision) as confidence_level
    from intervals
    left join leaders on leaders.kind = intervals.kind and leaders.channel = intervals.channel
)

select * from final
