-- Incremental mart publishing (issue 9): a normal day's publish recomputes only the mart rows whose inputs
-- changed since the last publish, instead of every mart from the whole history.
--
-- * mart_changes: a change log filled by statement-level triggers on every table a mart reads, naming what
--   a changed row touches: a customer (advocates, follow_ups, rewards), a review (its signals are checked
--   for staleness), a calendar day (loop_kpis_daily's rows are per day), a send day (outreach_funnel's rows
--   are per day its messages were sent; an answer or event counts there), a product and day (the sales
--   partials below) or a scoring date (the days whose customer-base columns it sets). A publish claims the entries effective by its
--   as-of in the transaction that publishes, so a change committed meanwhile stays for the next one.
-- * mart_publishes: one row per publish (full or incremental), with a digest of the mart SQL, catalog and
--   settings: a different digest, a first publish or an earlier as-of (a backfill) means a full rebuild.
-- * mart_sku_days: order lines summed per product and day (the sales side of product_feedback and the
--   product names of testimonials), refreshed per changed product and day.

create table smarketing.mart_changes (
    change_id     bigint generated always as identity primary key,
    entity        text not null check (entity in ('customer', 'review', 'day', 'send_day', 'sku_day', 'score_date')),
    key           text,                   -- customer_id (customer), review_id (review), sku (sku_day)
    day           date,                   -- entity day, send_day, sku_day, score_date
    effective_at  timestamptz not null    -- the row's event time: the change counts from then on
);
create index mart_changes_effective_idx on smarketing.mart_changes (effective_at);
comment on table smarketing.mart_changes is
    'What changed since the last mart publish (filled by triggers, claimed by publishes): customers, days, '
    'products per day and scoring dates whose mart rows must be recomputed.';

create table smarketing.mart_publishes (
    publish_id    bigint generated always as identity primary key,
    as_of         timestamptz not null,
    mode          text not null check (mode in ('full', 'incremental')),
    digest        text not null,         -- mart SQL, catalog and settings the marts were built with
    state         text not null check (state in ('started', 'published')),
    started_at    timestamptz not null default now(),
    rows          jsonb not null default '{}'
);
comment on table smarketing.mart_publishes is
    'One row per mart publish: full or incremental, as of when, and with which SQL and settings.';

create table smarketing.mart_sku_days (
    sku                   text not null,
    day                   date not null,
    orders_count          integer not null,       -- orders of the day with this product
    units                 bigint not null,
    revenue               numeric(14, 2) not null,
    last_ordered_at       timestamptz not null,   -- the day's latest order with this product
    last_name             text,                   -- first name (alphabetically) on the lines of that order time
    last_named_at         timestamptz,            -- the day's latest order whose line names the product
    last_named_name       text,                   -- first name on the named lines of that order time
    primary key (sku, day)
);
comment on table smarketing.mart_sku_days is
    'Order lines per product and order day up to the last mart publish: the partial sums of product_feedback.';

-- Days are UTC days (the marts build with timezone UTC); these indexes read the rows of a changed day.
create index if not exists orders_ordered_day_idx on smarketing.orders (((ordered_at at time zone 'UTC')::date));
create index if not exists orders_delivered_day_idx on smarketing.orders (((delivered_at at time zone 'UTC')::date));
create index if not exists outreach_messages_sent_day_idx
    on smarketing.outreach_messages (((sent_at at time zone 'UTC')::date)) where status = 'sent';
create index if not exists reviews_created_day_idx on smarketing.reviews (((created_at at time zone 'UTC')::date));
create index if not exists reviews_message_idx on smarketing.reviews (message_id) where message_id is not null;
create index if not exists social_posts_posted_day_idx on smarketing.social_posts (((posted_at at time zone 'UTC')::date));
create index if not exists social_posts_message_idx on smarketing.social_posts (message_id) where message_id is not null;
create index if not exists referrals_redeemed_day_idx on smarketing.referrals (((redeemed_at at time zone 'UTC')::date));
create index if not exists referrals_message_idx on smarketing.referrals (message_id) where message_id is not null;
create index if not exists suppressions_suppressed_day_idx
    on smarketing.suppressions (((suppressed_at at time zone 'UTC')::date));
create index if not exists email_events_occurred_day_idx
    on smarketing.email_events (((occurred_at at time zone 'UTC')::date));
create index if not exists email_events_message_idx on smarketing.email_events (message_id) where message_id is not null;
create index if not exists follow_ups_created_day_idx on smarketing.follow_ups (((created_at at time zone 'UTC')::date));
create index if not exists follow_ups_updated_day_idx on smarketing.follow_ups (((updated_at at time zone 'UTC')::date));
create index if not exists rewards_customer_idx on smarketing.rewards (customer_id);

-- Change capture. smarketing.mart_change_sources holds, per table a mart reads, SELECTs over a set of its rows
-- ({rows}) that return (entity, key, day, effective_at): what those rows touch. Statement-level
-- triggers run them over their transition tables, so a bulk load pays one insert per statement; nothing is
-- logged before the first publish (a full one). A full publish runs them over the whole tables for the rows
-- dated after its as-of (smarketing.log_future_mart_changes), so rows loaded early still count when due.
create table smarketing.mart_change_sources (
    table_name  text not null,
    template    text not null,
    primary key (table_name, template)
);
comment on table smarketing.mart_change_sources is
    'Per table a mart reads: what its rows touch, as SELECTs over {rows} (used by the mart_changes triggers).';

create function smarketing.log_mart_changes() returns trigger
language plpgsql as $$
declare
    relation text;
    template text;
begin
    if not exists (select 1 from smarketing.mart_publishes) then
        return null;
    end if;
    foreach relation in array case tg_op when 'INSERT' then array['new_rows'] when 'DELETE' then array['old_rows']
                                         else array['new_rows', 'old_rows'] end
    loop
        foreach template in array tg_argv loop
            execute 'insert into smarketing.mart_changes (entity, key, day, effective_at) '
                || replace(template, '{rows}', relation);
        end loop;
    end loop;
    return null;
end
$$;

create function smarketing.log_future_mart_changes(as_of timestamptz) returns void
language plpgsql as $$
declare
    spec record;
begin
    for spec in select table_name, template from smarketing.mart_change_sources order by 1, 2 loop
        execute 'insert into smarketing.mart_changes (entity, key, day, effective_at) '
            || 'select * from (' || replace(spec.template, '{rows}', 'smarketing.' || quote_ident(spec.table_name))
            || ') as touched (entity, key, day, effective_at) where effective_at > $1'
            using as_of;
    end loop;
end
$$;

do $$
declare
    -- the send day of the messages a response or event row names (outreach_funnel counts it there);
    -- {time} is the row's own time column
    answered constant text :=
        'select distinct ''send_day'', null::text, (m.sent_at at time zone ''UTC'')::date, greatest(r.{time}, m.sent_at) '
        || 'from {rows} r join smarketing.outreach_messages m on m.message_id = r.message_id '
        || 'where m.sent_at is not null';
    -- a row's UTC day of {time}, effective from {time}
    on_day constant text :=
        'select distinct ''day'', null::text, ({time} at time zone ''UTC'')::date, {time} from {rows} where {time} is not null';
    spec record;
    operation text;
    arguments text;
begin
    insert into smarketing.mart_change_sources (table_name, template)
    select table_name, unnest(templates)
    from (values
        ('customers', array[
            'select distinct ''customer'', customer_id, null::date, ''-infinity''::timestamptz from {rows}']),
        ('advocate_scores', array[
            'select distinct ''customer'', customer_id, null::date, score_date::timestamp at time zone ''UTC'' from {rows}']),
        ('follow_ups', array[
            'select distinct ''customer'', customer_id, null::date, created_at from {rows}',
            replace(on_day, '{time}', 'created_at'),
            replace(on_day, '{time}', 'updated_at') || ' and status in (''resolved'', ''dismissed'')']),
        ('rewards', array[
            'select distinct ''customer'', customer_id, null::date, issued_at from {rows}']),
        ('orders', array[
            replace(on_day, '{time}', 'ordered_at'),
            replace(on_day, '{time}', 'delivered_at'),
            'select distinct ''sku_day'', i.sku, (o.ordered_at at time zone ''UTC'')::date, o.ordered_at '
                || 'from {rows} o join smarketing.order_items i on i.order_id = o.order_id']),
        ('order_items', array[
            'select distinct ''sku_day'', i.sku, (o.ordered_at at time zone ''UTC'')::date, o.ordered_at '
                || 'from {rows} i join smarketing.orders o on o.order_id = i.order_id']),
        ('outreach_messages', array[
            replace(on_day, '{time}', 'sent_at'),
            replace(replace(on_day, '{time}', 'sent_at'), '''day''', '''send_day''')]),
        ('reviews', array[
            'select distinct ''review'', review_id, null::date, ''-infinity''::timestamptz from {rows}',
            replace(on_day, '{time}', 'created_at'),
            replace(answered, '{time}', 'created_at'),
            -- loop_kpis_daily counts a review request as answered on the day it was sent
            'select distinct ''day'', null::text, (m.sent_at at time zone ''UTC'')::date, greatest(r.created_at, m.sent_at) '
                || 'from {rows} r join smarketing.outreach_messages m on m.order_id = r.order_id '
                || 'where m.kind = ''review_request'' and m.sent_at is not null',
            'select distinct ''day'', null::text, (m.sent_at at time zone ''UTC'')::date, greatest(r.created_at, m.sent_at) '
                || 'from {rows} r join smarketing.outreach_messages m on m.message_id = r.message_id '
                || 'where m.kind = ''review_request'' and m.sent_at is not null']),
        ('social_posts', array[
            replace(on_day, '{time}', 'posted_at'),
            replace(answered, '{time}', 'posted_at')]),
        ('referrals', array[
            replace(on_day, '{time}', 'redeemed_at'),
            replace(answered, '{time}', 'redeemed_at')]),
        ('email_events', array[
            replace(on_day, '{time}', 'occurred_at'),
            replace(answered, '{time}', 'occurred_at')]),
        ('suppressions', array[
            replace(on_day, '{time}', 'suppressed_at')]),
        ('score_runs', array[
            'select distinct ''score_date'', null::text, score_date, score_date::timestamp at time zone ''UTC'' from {rows}'])
        ) as t (table_name, templates);

    for spec in select table_name, array_agg(template order by template) as templates
                from smarketing.mart_change_sources group by table_name loop
        arguments := (select string_agg(quote_literal(template), ', ') from unnest(spec.templates) as template);
        foreach operation in array array['insert', 'update', 'delete'] loop
            execute 'create trigger ' || quote_ident('mart_changes_' || operation) || ' after ' || operation
                || ' on smarketing.' || quote_ident(spec.table_name) || ' referencing '
                || case operation when 'insert' then 'new table as new_rows'
                                  when 'delete' then 'old table as old_rows'
                                  else 'new table as new_rows old table as old_rows' end
                || ' for each statement execute function smarketing.log_mart_changes(' || arguments || ')';
        end loop;
    end loop;
end
$$;
