-- Core warehouse tables: what the shop sold, to whom, and what happened to each order.
-- Contact details live in customer_contacts, apart from everything marketers may read.
create schema if not exists smarketing;
create schema if not exists marketing;

create table smarketing.customers (
    customer_id        text primary key,
    country            text,
    time_zone          text,
    accepts_marketing  boolean not null default false,
    accepts_sms        boolean not null default false,
    created_at         timestamptz,
    updated_at         timestamptz not null,
    source             text not null,
    loaded_at          timestamptz not null default now()
);
comment on table smarketing.customers is 'One row per shop customer: consent flags and locale, no contact data.';

create table smarketing.customer_contacts (
    customer_id  text primary key references smarketing.customers (customer_id) on delete cascade,
    email        text,
    first_name   text,
    phone        text,
    updated_at   timestamptz not null
);
comment on table smarketing.customer_contacts is 'Restricted: contact details of customers. Never exposed to BI roles.';
create index customer_contacts_email_idx on smarketing.customer_contacts (lower(email));

create table smarketing.orders (
    order_id       text primary key,
    customer_id    text not null,
    ordered_at     timestamptz not null,
    status         text not null check (status in ('placed', 'shipped', 'delivered', 'returned', 'cancelled')),
    shipped_at     timestamptz,
    delivered_at   timestamptz,
    total_amount   numeric(14, 2) not null check (total_amount >= 0),
    currency       text not null,
    discount_code  text,
    updated_at     timestamptz not null,
    source         text not null,
    loaded_at      timestamptz not null default now()
);
comment on table smarketing.orders is 'One row per order, at its latest known status.';
create index orders_customer_idx on smarketing.orders (customer_id);
create index orders_delivered_at_idx on smarketing.orders (delivered_at);
create index orders_updated_at_idx on smarketing.orders (updated_at);
create index orders_discount_code_idx on smarketing.orders (discount_code) where discount_code is not null;

create table smarketing.order_items (
    order_id      text not null,
    line_no       integer not null,
    sku           text not null,
    product_name  text,
    quantity      integer not null check (quantity > 0),
    unit_price    numeric(14, 2) not null check (unit_price >= 0),
    primary key (order_id, line_no)
);
comment on table smarketing.order_items is 'One row per order line.';
create index order_items_sku_idx on smarketing.order_items (sku);

-- Every status an order was seen in, so that "returned after delivery" survives later updates.
create table smarketing.order_status_history (
    order_id     text not null,
    status       text not null,
    observed_at  timestamptz not null,
    primary key (order_id, status)
);

-- Rows that failed validation, with the reason; nothing is dropped silently.
create table smarketing.quarantine (
    quarantine_id   bigint generated always as identity primary key,
    dataset         text not null,
    source          text not null,
    record_key      text,
    rule            text not null,
    reason          text not null,
    raw             jsonb not null,
    raw_hash        text not null,
    run_id          text,
    quarantined_at  timestamptz not null default now(),
    unique (dataset, raw_hash, rule)
);
comment on table smarketing.quarantine is 'One row per rejected input row and broken rule, with a readable reason.';

-- Incremental loading: the highest source updated_at already loaded per source and dataset.
create table smarketing.watermarks (
    source          text not null,
    dataset         text not null,
    high_watermark  timestamptz not null,
    updated_at      timestamptz not null default now(),
    primary key (source, dataset)
);

create table smarketing.ingest_runs (
    run_id            text not null,
    source            text not null,
    dataset           text not null,
    window_start      timestamptz,
    window_end        timestamptz not null,
    rows_read         bigint not null,
    rows_loaded       bigint not null,
    rows_quarantined  bigint not null,
    seconds           double precision not null,
    finished_at       timestamptz not null default now(),
    primary key (run_id, source, dataset)
);
