-- The reference shop schema (DESIGN.md section 4), as the demo shop and tests create it.
-- Keys are indexed but deliberately not enforced: real shop exports and replicas carry duplicates
-- and gaps, and ingestion must cope with them rather than assume a clean source.
create schema if not exists shop;

create table if not exists shop.customers (
    customer_id        text,
    email              text,
    first_name         text,
    phone              text,
    country            text,
    time_zone          text,
    accepts_marketing  boolean,
    accepts_sms        boolean,
    created_at         timestamptz,
    updated_at         timestamptz
);
create index if not exists customers_updated_at_idx on shop.customers (updated_at);

create table if not exists shop.orders (
    order_id       text,
    customer_id    text,
    ordered_at     timestamptz,
    status         text,
    shipped_at     timestamptz,
    delivered_at   timestamptz,
    total_amount   numeric(14, 2),
    currency       text,
    discount_code  text,
    updated_at     timestamptz
);
create index if not exists orders_updated_at_idx on shop.orders (updated_at);
create index if not exists orders_order_id_idx on shop.orders (order_id);

create table if not exists shop.order_items (
    order_id      text,
    line_no       integer,
    sku           text,
    product_name  text,
    quantity      integer,
    unit_price    numeric(14, 2)
);
create index if not exists order_items_order_id_idx on shop.order_items (order_id);

create table if not exists shop.reviews (
    review_id           text,
    order_id            text,
    customer_id         text,
    sku                 text,
    rating              integer,
    title               text,
    body                text,
    consent_to_publish  boolean,
    incentivized        boolean,
    created_at          timestamptz
);
create index if not exists reviews_created_at_idx on shop.reviews (created_at);

create table if not exists shop.social_posts (
    post_id        text,
    platform       text,
    author_handle  text,
    customer_id    text,
    referral_code  text,
    body           text,
    followers      integer,
    url            text,
    posted_at      timestamptz
);
create index if not exists social_posts_posted_at_idx on shop.social_posts (posted_at);

create table if not exists shop.email_events (
    event_id     text,
    email        text,
    event_type   text,
    occurred_at  timestamptz
);
create index if not exists email_events_occurred_at_idx on shop.email_events (occurred_at);
