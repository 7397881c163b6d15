-- marketing.follow_ups
-- Grain: one row per customer and follow-up reason (the closed loop's work items), opened up to the as-of
-- time, with the customer's current score so that sales sees what is at stake.
-- Parameters: :as_of (timestamptz); :full (boolean) or else only the customers in :changed_customers (text[]).
-- Session time zone is UTC. The build redacts contact data from free text. Reads marketing_build.advocates.

with

follow_ups as (
    select *
    from smarketing.follow_ups
    where created_at <= :as_of
      and (cast(:full as boolean) or customer_id = any(cast(:changed_customers as text[])))
),

-- each customer's latest score as advocates (built first, in the staging schema, for the same customers and
-- as-of) took it, in the same types: not a second pass over every score (0.7 s of server CPU at 1M purchases)
current_scores as (
    select customer_id, segment, advocate_score, lifetime_value
    from marketing_build.advocates
),

final as (
    select
        follow_ups.customer_id,
        follow_ups.reason,
        follow_ups.priority,
        follow_ups.owner_team,
        follow_ups.status,
        follow_ups.status in ('open', 'contacted') as is_waiting,
        case when follow_ups.status in ('open', 'contacted')
             then greatest(0, extract(day from cast(:as_of as timestamptz) - follow_ups.created_at))::integer
        end as days_waiting,
        follow_ups.review_excerpt,
        follow_ups.suggested_questions,
        follow_ups.outcome,
        current_scores.segment,
        current_scores.advocate_score,
        current_scores.lifetime_value,
        follow_ups.created_at,
        follow_ups.updated_at
    from follow_ups
    left join current_scores on current_scores.customer_id = follow_ups.customer_id
)

select * from final
