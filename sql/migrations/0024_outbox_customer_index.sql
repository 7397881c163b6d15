-- Every lookup of the outbox by customer is served by another index (issue 9, the planner's per-ask cost):
-- * by customer alone (erasure, cooldown, cap): outreach_messages_customer_due_idx (customer_id, due_at);
-- * the sent asks of a customer by send time (response attribution, referrals):
--   outreach_messages_customer_kind_sent_idx (customer_id, kind, sent_at) where status = 'sent'.
-- (customer_id, sent_at) only cost each outbox insert, and each send, one more index entry.
drop index if exists smarketing.outreach_messages_customer_idx;
