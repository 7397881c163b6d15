-- The outbox's idempotency key `customer:order:kind:step` was ambiguous: ids are free text, so customer `a:b` with
-- order `c` and customer `a` with order `b:c` shared a key, as did an order id that is exactly `-` and "no order",
-- and the planner's `on conflict (idempotency_key) do nothing` silently dropped the second ask.
--
-- (This file spells the percent sign chr(37) and names it in words: the migrator sends the file through the
-- driver, which reads a bare one as a placeholder.)
--
-- smarketing.outreach_key percent-escapes the ids: percent -> percent 25 first, then `:` -> percent 3A; an order id
-- that is exactly `-` -> percent 2D; a missing order -> `-`. It is injective: an escaped id holds no `:`, so a key
-- splits back into its four parts at its three colons; the escaping is undone by reading percent 25 and percent 3A
-- left to right (every percent sign of an escaped id starts one of them); in the order part, `-` is only "no
-- order" and percent 2D only the order `-` (escaping never writes percent 2D, and writes `-` only for `-`). Kinds
-- are the planner's fixed words. Ids without a percent sign, a `:` or a lone `-` keep the key they had, so their
-- message ids and A/B variants stay too. eligibility.idempotency_key is the same rule in Python (tests compare).
-- Immutable throughout (`step::text`, not `|| step`, which is only stable), so the planner inlines the body:
-- a call per row of a SQL function that is not inlined cost ~5 µs, ~20 times the expression.
create function smarketing.outreach_key(customer_id text, order_id text, kind text, step integer) returns text
language sql immutable parallel safe as $$
    select replace(replace(customer_id, chr(37), chr(37) || '25'), ':', chr(37) || '3A') || ':'
        || case when order_id is null then '-' when order_id = '-' then chr(37) || '2D'
                else replace(replace(order_id, chr(37), chr(37) || '25'), ':', chr(37) || '3A') end
        || ':' || kind || ':' || step::text
$$;
comment on function smarketing.outreach_key(text, text, text, integer) is
    'The outbox idempotency key customer:order:kind:step, ids percent-escaped (percent sign, colon, an order "-").';

-- Rows planned before this migration whose ids need escaping take the new key, recomputed from their own columns.
-- Their message_id (and template_variant) stay: a sent message's Message-ID, its signed links and the responses
-- attributed to it name that id, and a `planned` row may be one whose lease lapsed after the server took it,
-- which must be resent with the same Message-ID (so every status keeps it). The keys pass through a placeholder
-- (no `:`, so no key of the planner's) because the unique index is checked row by row: a new key may equal the
-- old key of a row not rewritten yet (customer `a` percent `3Ab` vs `a:b`). The result is unique: the planner
-- computed each old key from its row's ids, so distinct keys mean distinct ids, and the new rule is injective.
update smarketing.outreach_messages
set idempotency_key = 'before 0026 ' || message_id
where strpos(customer_id, chr(37)) > 0 or strpos(customer_id, ':') > 0
   or strpos(order_id, chr(37)) > 0 or strpos(order_id, ':') > 0 or order_id = '-';

update smarketing.outreach_messages
set idempotency_key = smarketing.outreach_key(customer_id, order_id, kind, step)
where idempotency_key = 'before 0026 ' || message_id;
