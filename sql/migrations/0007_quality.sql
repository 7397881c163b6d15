-- Data quality: one row per suite validated per run and batch, so data teams can chart quality over time.
-- Rows that break a row-level expectation go to smarketing.quarantine (0001) with the expectation as rule.

create table smarketing.validation_runs (
    validation_id           bigint generated always as identity primary key,
    suite                   text not null,                -- expectations/<suite>.json
    dataset                 text not null,                -- the quarantine dataset name
    run_id                  text not null,                -- the Airflow run (or a caller's id)
    batch                   text not null,                -- what was validated: table and filter, or a frame
    mode                    text not null check (mode in ('sql', 'pandas')),
    run_time                timestamptz,                  -- the run's logical time ("now" of the rules)
    rows_checked            bigint not null,
    rows_bad                bigint not null,              -- rows breaking at least one row-level expectation
    rows_quarantined        bigint not null,
    bad_share               double precision not null,
    threshold               double precision not null,    -- the suite's max_bad_share
    expectations_evaluated  integer not null,
    expectations_failed     integer not null,
    success                 boolean not null,             -- false: the gate stopped publishing
    failure_message         text,                         -- what the task raised, word for word
    results                 jsonb not null,               -- per expectation: type, column, success, counts, sample
    metrics                 jsonb not null default '{}',  -- distribution metrics; later runs compare with these
    gx_result               jsonb,                        -- the GX validation result (samples trimmed) for Data Docs
    seconds                 double precision not null,
    finished_at             timestamptz not null default now(),
    unique (suite, run_id, batch)
);
comment on table smarketing.validation_runs is
    'One row per Great Expectations suite run per batch: counts, pass/fail, duration. A rerun replaces its row.';
create index validation_runs_suite_time_idx on smarketing.validation_runs (suite, run_time);
create index validation_runs_failed_idx on smarketing.validation_runs (finished_at) where not success;
