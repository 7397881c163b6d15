-- Incremental scoring (issue 9): a normal day's run rescores the customers whose inputs changed, plus those
-- whose segment can change with the passage of time alone, instead of every customer.
--
-- * score_changes: a change log filled by statement-level triggers on every table scoring reads. A run claims
--   (deletes) the entries that are effective by its "now", in the same transaction that records them in
--   score_queue, so a change committed while a run is going stays for the next run: nothing is missed.
-- * score_state: per customer, the order facts the value model is fitted on (so a refit needs no pass over
--   the orders) and rescore_on, the first date the segment may change with time alone (P(alive) decays).
-- * score_runs: one row per scoring date: mode, what was rescored, and the segment counts of the whole
--   customer base after the run (maintained from the rescored customers' previous rows, not by a scan).
-- * advocate_scores keeps one row per customer and date the customer was (re)scored: a customer's current
--   score is their latest row, as the marts already read it.

create table smarketing.score_changes (
    customer_id   text not null,
    effective_at  timestamptz not null   -- the row's event time: the change counts from then on
);
create index score_changes_effective_idx on smarketing.score_changes (effective_at);
comment on table smarketing.score_changes is
    'Customers whose scoring inputs changed and have not been rescored yet (filled by triggers, claimed by runs).';

create table smarketing.score_queue (
    score_date   date not null,
    customer_id  text not null,
    reason       text not null check (reason in ('changed', 'due', 'all')),
    primary key (score_date, customer_id)
);
comment on table smarketing.score_queue is
    'Customers a scoring date rescores: claimed changes, time-boundary crossings, or everyone (full run).';

create table smarketing.score_state (
    customer_id        text primary key,
    orders_count       integer not null,
    lifetime_value     numeric(14, 2) not null,
    first_day          date,
    last_day           date,
    last_order_at      timestamptz,
    x                  integer,
    mean_repeat_value  double precision,
    scored_on          date not null,          -- the latest date this customer was scored
    rescore_on         date                    -- first date the segment may change by time alone; null = never
);
create index score_state_rescore_idx on smarketing.score_state (rescore_on) where rescore_on is not null;
comment on table smarketing.score_state is
    'Per customer: order facts of the last scoring (the value model is refitted on these) and the next date '
    'their segment may change with time alone.';

create table smarketing.score_runs (
    score_date          date primary key,
    as_of               timestamptz not null,
    mode                text not null check (mode in ('full', 'incremental')),
    model_date          date not null,          -- the score_models row the run used
    refitted            boolean not null,
    changed             integer not null,       -- customers rescored because their inputs changed
    due                 integer not null,       -- ... because a time boundary was reached
    rescored            integer not null,       -- rows written for this date
    customers_scored    integer,                -- the whole base after the run (each customer's latest row)
    promoters           integer,
    passives            integer,
    detractors          integer,
    advocates           integer,
    lukewarm            integer,
    segment_champion    integer,
    segment_advocate    integer,
    segment_promising   integer,
    segment_lukewarm    integer,
    segment_at_risk     integer,
    segment_detractor   integer,
    segment_silent      integer,
    unhappy_customers   integer,
    priority_cuts       double precision[],     -- follow-up priority_key at which priorities 1-4 start
    seconds             jsonb not null default '{}'
);
comment on table smarketing.score_runs is
    'One row per scoring date: full or incremental, what was rescored, and the segment counts of the whole base.';

-- The value model is refitted on a cadence; each run uses the latest fit on or before its date.
alter table smarketing.score_models
    add column r_cuts double precision[],    -- RFM quintile cut points: last order (epoch seconds) ...
    add column f_cuts double precision[],    -- ... orders ...
    add column m_cuts double precision[];    -- ... kept revenue; bucket = 1 + number of cuts <= the value

alter table smarketing.score_inputs
    add column first_day date,
    add column last_day date,
    add column last_order_at timestamptz,
    add column review_id text,
    add column review_signal boolean not null default false,   -- a review_signals row exists for it
    add column review_sentiment double precision,
    add column review_signal_language text;

alter table smarketing.follow_up_candidates add column priority_key double precision;
-- The priority weight on a date-independent scale (log weight + the decay's clock), so that items ranked on
-- different dates compare: a refit re-derives the priority cut points from the waiting items.
alter table smarketing.follow_ups add column priority_key double precision;

-- Change capture. One generic trigger function: arguments are the customer column, the event-time column
-- and an optional filter; statement-level with transition tables, so a bulk load pays one insert per
-- statement. Nothing is logged before the first scoring run (that run is a full one anyway).
create function smarketing.log_score_changes() returns trigger
language plpgsql as $$
declare
    customer_column text := tg_argv[0];
    time_column text := tg_argv[1];
    row_filter text := coalesce(tg_argv[2], 'true');
    relation text;
begin
    if not exists (select 1 from smarketing.score_runs) then
        return null;
    end if;
    -- an update counts for the row's old customer too (an order or review re-attributed to someone else)
    foreach relation in array case tg_op when 'INSERT' then array['new_rows'] else array['new_rows', 'old_rows'] end
    loop
        execute 'insert into smarketing.score_changes (customer_id, effective_at) select distinct '
            || quote_ident(customer_column) || ', coalesce(' || quote_ident(time_column) || ', ''-infinity'') from '
            || relation || ' where ' || quote_ident(customer_column) || ' is not null and (' || row_filter || ')';
    end loop;
    return null;
end
$$;

do $$
declare
    spec record;
    arguments text;
begin
    for spec in select * from (values
            ('customers', 'customer_id', 'created_at', null),
            ('orders', 'customer_id', 'ordered_at', null),
            ('reviews', 'customer_id', 'created_at', null),
            ('social_posts', 'customer_id', 'posted_at', null),
            ('nps_answers', 'customer_id', 'answered_at', null),
            ('referrals', 'referrer_customer_id', 'redeemed_at', null),
            ('email_events', 'customer_id', 'occurred_at', 'event_type = ''complaint''')
        ) as t (table_name, customer_column, time_column, row_filter)
    loop
        arguments := quote_literal(spec.customer_column) || ', ' || quote_literal(spec.time_column)
            || coalesce(', ' || quote_literal(spec.row_filter), '');
        execute 'create trigger score_changes_insert after insert on smarketing.' || quote_ident(spec.table_name)
            || ' referencing new table as new_rows for each statement'
            || ' execute function smarketing.log_score_changes(' || arguments || ')';
        continue when spec.table_name = 'customers';   -- only a new customer changes who is scored
        execute 'create trigger score_changes_update after update on smarketing.' || quote_ident(spec.table_name)
            || ' referencing new table as new_rows old table as old_rows for each statement'
            || ' execute function smarketing.log_score_changes(' || arguments || ')';
    end loop;
end
$$;

-- A review's sentiment, computed once per review, is a scoring input too: a (re)computed signal rescores
-- the review's customer.
create function smarketing.log_review_signal_changes() returns trigger
language plpgsql as $$
begin
    if exists (select 1 from smarketing.score_runs) then
        insert into smarketing.score_changes (customer_id, effective_at)
        select distinct r.customer_id, r.created_at
        from new_rows n join smarketing.reviews r using (review_id)
        where r.customer_id is not null;
    end if;
    return null;
end
$$;
create trigger score_changes_insert after insert on smarketing.review_signals referencing new table as new_rows
    for each statement execute function smarketing.log_review_signal_changes();
create trigger score_changes_update after update on smarketing.review_signals referencing new table as new_rows
    for each statement execute function smarketing.log_review_signal_changes();
