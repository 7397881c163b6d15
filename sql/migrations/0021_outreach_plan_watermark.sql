-- Incremental outreach planning (issue 9): a normal run reads the asks whose moment came since the previous
-- run (plus an overlap) and the orders changed since then, instead of re-reading the whole ask window.

-- One row per completed planning run, written in the planning transaction: a run that fails writes nothing,
-- so the next run starts from the last one that committed.
create table smarketing.outreach_plan_runs (
    plan_id           bigint generated always as identity primary key,
    run_id            text not null,
    as_of             timestamptz not null,          -- the run's "now": asks due by then were planned
    mode              text not null check (mode in ('full', 'incremental')),
    moments_from      timestamptz not null,          -- asks whose moment is after this were read
    orders_watermarks jsonb not null default '{}',   -- source -> orders high watermark seen when the run began
    settings_digest   text not null,                 -- timing settings: another digest means a full re-plan
    planned_at        timestamptz not null default now(),
    counts            jsonb not null default '{}'
);
create index outreach_plan_runs_as_of_idx on smarketing.outreach_plan_runs (as_of);
comment on table smarketing.outreach_plan_runs is
    'One row per outreach planning run: as of when, full or incremental, and the ingest watermarks it saw.';

-- Every lookup by order (the planner's "asked already?" probes, reminders, response attribution, the mart
-- triggers) is served by the leading column of outreach_messages_kind_order_idx (order_id, kind, status);
-- this index only cost each outbox insert a ninth index entry.
drop index if exists smarketing.outreach_messages_order_idx;
