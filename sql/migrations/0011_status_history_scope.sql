-- order_status_history keeps returns and cancellations only (the no-ask rules need them even after a
-- later update hides them); shipped_at and delivered_at already live on smarketing.orders.
comment on table smarketing.order_status_history is
    'One row per order that was ever returned or cancelled, with the time that status was first seen.';
delete from smarketing.order_status_history where status not in ('returned', 'cancelled');
