-- Privacy operations (smarketing_tasks/privacy.py, dags/smarketing_privacy.py).
--
-- The record of erasures: proof that a request was honoured, without keeping what was erased. Ids and
-- addresses are stored as SHA-256 hashes only; the hash of the customer id also lets the daily privacy
-- run erase again a customer that the shop sends back through ingestion.
create table smarketing.erasures (
    erasure_id    bigint generated always as identity primary key,
    customer_key  text,                        -- sha256 hex of the customer_id; null when nobody was found
    email_hash    text,                        -- sha256 hex of the lower-cased address, when one was given or known
    request_ref   text not null default '',    -- the operator's ticket or request id
    requested_at  timestamptz not null,        -- the run's logical time
    erased_at     timestamptz not null default now(),
    rows_deleted  jsonb not null,              -- table -> rows removed (counts only)
    run_id        text
);
comment on table smarketing.erasures is 'One row per honoured erasure request: hashes and counts, never personal data.';
-- A rerun of the same request records nothing twice.
create unique index erasures_request_uidx
    on smarketing.erasures (coalesce(customer_key, email_hash, ''), request_ref);
create index erasures_customer_key_idx on smarketing.erasures (customer_key);

-- Retention sweeps look customers up by their last change.
create index if not exists customer_contacts_updated_at_idx on smarketing.customer_contacts (updated_at);
create index if not exists quarantine_quarantined_at_idx on smarketing.quarantine (quarantined_at);
