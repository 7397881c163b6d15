-- Referral redemptions examine the orders changed since the last run and the pending ones (issue 9,
-- incremental cost), no longer every order with a discount code on each run.
--
-- * referral_changes: ids of orders with a discount code, logged by statement-level triggers when such an order
--   is written, or when a referral code an order used is issued; a run claims (deletes) them in the
--   transaction that examines them, so a change committed while a run is going stays for the next run.
-- * referral_pending: orders a run examined whose outcome can still change (ordered after the run's time, a
--   code not issued or not known yet, a first order that waits for another first order of the customer); every
--   run examines them again until they are redeemed or rejected for good.

create table smarketing.referral_changes (
    order_id  text not null
);
comment on table smarketing.referral_changes is
    'Orders with a discount code written since the last referral run (filled by triggers, claimed by runs).';

create table smarketing.referral_pending (
    order_id  text primary key
);
comment on table smarketing.referral_pending is
    'Orders with a referral-shaped or known code that are neither redeemed nor rejected for good yet.';

-- Finds the orders that used a code when the code is issued.
create index orders_discount_code_normalised_idx on smarketing.orders (upper(trim(discount_code)))
    where discount_code is not null;

create function smarketing.log_referral_order_changes() returns trigger
language plpgsql as $$
begin
    insert into smarketing.referral_changes (order_id)
    select order_id from new_rows where discount_code is not null;
    return null;
end
$$;

create trigger referral_changes_insert after insert on smarketing.orders
    referencing new table as new_rows for each statement execute function smarketing.log_referral_order_changes();
create trigger referral_changes_update after update on smarketing.orders
    referencing new table as new_rows for each statement execute function smarketing.log_referral_order_changes();

create function smarketing.log_referral_code_changes() returns trigger
language plpgsql as $$
begin
    insert into smarketing.referral_changes (order_id)
    select o.order_id from new_rows c
    join smarketing.orders o on upper(trim(o.discount_code)) = c.referral_code and o.discount_code is not null;
    return null;
end
$$;

create trigger referral_changes_code_insert after insert on smarketing.referral_codes
    referencing new table as new_rows for each statement execute function smarketing.log_referral_code_changes();
create trigger referral_changes_code_update after update on smarketing.referral_codes
    referencing new table as new_rows for each statement execute function smarketing.log_referral_code_changes();

-- Orders loaded before this migration: the first run after it examines them all, as every run did before.
insert into smarketing.referral_changes (order_id)
select order_id from smarketing.orders where discount_code is not null;
