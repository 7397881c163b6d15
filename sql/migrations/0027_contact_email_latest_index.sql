-- Responses find an event's or a review's customer by address: the latest contact with that lowercased email
-- (order by updated_at desc, customer_id). With those columns in the index a probe reads its first entry
-- instead of fetching the matches and sorting them, once per stage row (issue 9). Its leading column serves
-- every other lookup by lower(email) (erasure), so it replaces customer_contacts_email_idx.
create index if not exists customer_contacts_email_latest_idx
    on smarketing.customer_contacts (lower(email), updated_at desc, customer_id);
drop index if exists smarketing.customer_contacts_email_idx;
