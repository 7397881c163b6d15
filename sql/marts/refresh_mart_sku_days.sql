-- smarketing.mart_sku_days (migration 0018): order lines summed per product and UTC order day, for orders
-- placed up to the as-of time; product_feedback's sales and the product names of both product marts are
-- summed from it. The publisher deletes the days it refreshes first: every day (:full) or the days in
-- :changed_days (date[]), read by the orders' day index.
-- Parameters: :as_of (timestamptz), :full (boolean), :changed_days (date[]). Session time zone is UTC.

insert into smarketing.mart_sku_days (sku, day, orders_count, units, revenue, last_ordered_at, last_name,
                                      last_named_at, last_named_name)

with

lines as (
    select items.sku, items.order_id, orders.ordered_at, orders.ordered_at::date as day, items.quantity,
           items.quantity * items.unit_price as amount, items.product_name
    from smarketing.orders as orders
    join smarketing.order_items as items on items.order_id = orders.order_id
    where orders.ordered_at <= :as_of
      and (cast(:full as boolean)
           or (orders.ordered_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),

-- one row per order and product first (an order counts once per product), then per product and day
order_products as (
    select sku, day, order_id, max(ordered_at) as ordered_at, sum(quantity) as units, sum(amount) as revenue
    from lines
    group by sku, day, order_id
),

totals as (
    select sku, day, count(*)::integer as orders_count, sum(units)::bigint as units,
           sum(revenue)::numeric(14, 2) as revenue, max(ordered_at) as last_ordered_at
    from order_products
    group by sku, day
),

last_names as (
    select lines.sku, lines.day, min(lines.product_name) as last_name
    from lines
    join totals on totals.sku = lines.sku and totals.day = lines.day and totals.last_ordered_at = lines.ordered_at
    group by lines.sku, lines.day
),

named as (
    select sku, day, max(ordered_at) as last_named_at
    from lines
    where product_name is not null
    group by sku, day
),

named_names as (
    select lines.sku, lines.day, min(lines.product_name) as last_named_name
    from lines
    join named on named.sku = lines.sku and named.day = lines.day and named.last_named_at = lines.ordered_at
    where lines.product_name is not null
    group by lines.sku, lines.day
)

select totals.sku, totals.day, totals.orders_count, totals.units, totals.revenue, totals.last_ordered_at,
       last_names.last_name, named.last_named_at, named_names.last_named_name
from totals
left join last_names on last_names.sku = totals.sku and last_names.day = totals.day
left join named on named.sku = totals.sku and named.day = totals.day
left join named_names on named_names.sku = totals.sku and named_names.day = totals.day
