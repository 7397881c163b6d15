-- marketing.rewards
-- Grain: one row per customer and reward reason; several rewards for the same reason (two converted
-- referrals, say) are counted, with the latest code and all codes in order.
-- Parameters: :as_of (timestamptz); :full (boolean) or else only the customers in :changed_customers (text[]).

with

rewards as (
    select *
    from smarketing.rewards
    where issued_at <= :as_of
      and (cast(:full as boolean) or customer_id = any(cast(:changed_customers as text[])))
),

final as (
    select
        customer_id,
        reason,
        count(*)::integer as rewards_count,
        (array_agg(reward_code order by issued_at desc, reward_code desc))[1] as reward_code,
        string_agg(reward_code, ',' order by issued_at, reward_code) as reward_codes,
        min(issued_at) as first_issued_at,
        max(issued_at) as issued_at
    from rewards
    group by customer_id, reason
)

select * from final
