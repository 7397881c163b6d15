-- smarketing.mart_sku_days (migration 0018): order lines summed per product and UTC order day, for orders
-- placed up to the as-of time; product_feedback's sales and the product names of both product marts are
-- summed from it. Selects the rows of every day (:full) or of the days in :changed_days (date[]), read by the
-- orders' day index; the publisher inserts them (in the columns' order) in place of those days' rows.
-- Parameters: :as_of (timestamptz), :full (boolean), :changed_days (date[]). Session time zone is UTC.
-- One pass over the order lines (a full refresh reads 2M of them at 1M purchases): the sums per product and
-- day, then the names from the few lines of each product's latest orders, looked up by those orders' times.

with

lines as (
    select items.sku, orders.ordered_at, orders.ordered_at::date as day, items.quantity,
           items.quantity * items.unit_price as amount, items.product_name,
           -- an order counts once per product: at the first of its lines with that product
           row_number() over (partition by items.order_id, items.sku order by items.line_no) = 1 as opens_order
    from smarketing.orders as orders
    join smarketing.order_items as items on items.order_id = orders.order_id
    where orders.ordered_at <= :as_of
      and (cast(:full as boolean)
           or (orders.ordered_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))
),

totals as (
    select sku, day, (count(*) filter (where opens_order))::integer as orders_count, sum(quantity)::bigint as units,
           sum(amount)::numeric(14, 2) as revenue, max(ordered_at) as last_ordered_at,
           max(ordered_at) filter (where product_name is not null) as last_named_at
    from lines
    group by sku, day
),

-- the product's lines on its latest order of the day and on its latest order that names it (orders placed at
-- the same moment count alike)
-- (the orders at those times are picked by a semi-join on the few times: joined directly, the planner hashed all
-- 1,000,399 orders, in 8 batches on disk at 1M purchases, to probe them with 7,300 times)
latest_lines as (
    select wanted.sku, wanted.day, wanted.ordered_at, items.product_name
    from (select sku, day, last_ordered_at as ordered_at from totals
          union
          select sku, day, last_named_at from totals where last_named_at is not null) as wanted
    join (select orders.order_id, orders.ordered_at
          from smarketing.orders as orders
          where orders.ordered_at in (select last_ordered_at from totals union select last_named_at from totals)
            and (cast(:full as boolean)
                 or (orders.ordered_at at time zone 'UTC')::date = any(cast(:changed_days as date[])))) as orders
      on orders.ordered_at = wanted.ordered_at
    join smarketing.order_items as items on items.order_id = orders.order_id and items.sku = wanted.sku
),

-- the first name alphabetically on those lines (none when none of them names the product)
names as (
    select totals.sku, totals.day,
           min(latest_lines.product_name) filter (where latest_lines.ordered_at = totals.last_ordered_at) as last_name,
           min(latest_lines.product_name) filter (where latest_lines.ordered_at = totals.last_named_at)
               as last_named_name
    from totals
    join latest_lines on latest_lines.sku = totals.sku and latest_lines.day = totals.day
    group by totals.sku, totals.day
)

select totals.sku, totals.day, totals.orders_count, totals.units, totals.revenue, totals.last_ordered_at,
       names.last_name, totals.last_named_at, names.last_named_name
from totals
left join names on names.sku = totals.sku and names.day = totals.day
