-- When referral codes are issued, their trigger logs the orders that already used them. It joined the new
-- codes to every discount-code order (a hash join: 24 ms for the ~300 codes a day's share asks issue at 100k
-- purchases, most of the planner's write step); one index probe per issued code instead (OFFSET 0 keeps the
-- planner from turning the probe back into that join).
create or replace function smarketing.log_referral_code_changes() returns trigger
language plpgsql as $$
begin
    insert into smarketing.referral_changes (order_id)
    select o.order_id from new_rows c
    cross join lateral (
        select order_id from smarketing.orders
        where upper(trim(discount_code)) = c.referral_code and discount_code is not null
        offset 0
    ) o;
    return null;
end
$$;
