-- Indexes that let a normal day's run touch that day's rows, not the whole history (issue 9, incremental
-- cost; docs/benchmarks/loop.md). Each one serves a condition the code already writes in a sargable form.

-- The customers suite audits the customers changed in the ingest window (orders already had this index).
create index if not exists customers_updated_at_idx on smarketing.customers (updated_at);

-- The outreach planner's review asks fall back to shipping, then ordering time, for orders without a
-- delivery (or shipping) event. Partial: such orders are few, and the planner's OR arms name the same
-- predicates so that PostgreSQL combines these with orders_delivered_at_idx in one bitmap scan.
create index if not exists orders_undelivered_shipped_at_idx on smarketing.orders (shipped_at)
    where delivered_at is null;
create index if not exists orders_unshipped_ordered_at_idx on smarketing.orders (ordered_at)
    where delivered_at is null and shipped_at is null;

-- Reminders are due a fixed delay after a sent request reached the customer (its due time, or later if it
-- went out late): only the requests whose moment falls in the planning window are read.
create index if not exists outreach_messages_sent_request_reached_idx
    on smarketing.outreach_messages ((greatest(due_at, sent_at)))
    where kind = 'review_request' and status = 'sent';
