-- A lookup of reviews by customer alone (scoring's changed customers, erasure, the planner's unhappy-review
-- check) is served by the leading column of reviews_customer_order_sku_idx (customer_id, order_id, sku);
-- reviews_customer_idx (customer_id) only cost every loaded review a seventh index entry (issue 9).
drop index if exists smarketing.reviews_customer_idx;
