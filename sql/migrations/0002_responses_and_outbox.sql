-- Shared tables of the loop's later stages, created together so that outreach, responses and scoring
-- agree on one shape. Stage-specific tables come in their own migrations.

-- Secrets generated on first use (e.g. the review-link signing key) when none is configured.
create table smarketing.secrets (
    name        text primary key,
    value       text not null,
    created_at  timestamptz not null default now()
);
comment on table smarketing.secrets is 'Restricted: generated secrets such as the link-signing key.';

-- The outbox: one row per intended message, keyed by its idempotency key.
create table smarketing.outreach_messages (
    message_id           text primary key,            -- derived from idempotency_key; also the email Message-ID local part
    idempotency_key      text not null unique,        -- customer:order:kind:step
    customer_id          text not null,
    order_id             text,
    kind                 text not null check (kind in ('review_request', 'review_reminder', 'share_ask', 'referral_ask', 'thank_you')),
    step                 smallint not null default 1,
    channel              text not null check (channel in ('email', 'sms', 'webhook')),
    template_variant     text not null,
    consent_basis        text,                        -- marketing_consent | soft_opt_in | sms_consent
    status               text not null default 'planned'
                         check (status in ('planned', 'sending', 'sent', 'failed', 'skipped', 'expired')),
    status_reason        text,                        -- why skipped / expired / failed, in words
    due_at               timestamptz not null,
    expires_at           timestamptz not null,
    planned_at           timestamptz not null,
    planned_run_id       text,
    claimed_at           timestamptz,
    claimed_by           text,
    sent_at              timestamptz,
    attempts             integer not null default 0,
    error_kind           text check (error_kind in ('transient', 'permanent')),
    last_error           text,
    provider_message_id  text
);
create index outreach_messages_status_due_idx on smarketing.outreach_messages (status, due_at);
create index outreach_messages_customer_idx on smarketing.outreach_messages (customer_id, sent_at);
create index outreach_messages_order_idx on smarketing.outreach_messages (order_id);

-- Suppression list: always wins over every other rule.
create table smarketing.suppressions (
    email          text primary key,                  -- lower-cased address
    customer_id    text,
    reason         text not null check (reason in ('unsubscribe', 'hard_bounce', 'complaint', 'erasure', 'manual')),
    source         text not null,                     -- email_events | link_service | import | operator
    suppressed_at  timestamptz not null
);
create index suppressions_customer_idx on smarketing.suppressions (customer_id);

-- Each customer's own referral code (share asks carry it; redemptions credit it).
create table smarketing.referral_codes (
    customer_id    text primary key,
    referral_code  text not null unique,
    created_at     timestamptz not null
);

create table smarketing.reviews (
    review_id           text primary key,
    order_id            text,
    customer_id         text,
    sku                 text,
    rating              smallint not null check (rating between 1 and 5),
    title               text,
    body                text,
    consent_to_publish  boolean not null default false,
    incentivized        boolean not null default false,
    language            text,
    created_at          timestamptz not null,
    source              text not null,
    message_id          text,                         -- the ask that produced it, when attributed
    attribution         text check (attribution in ('token', 'window', 'none')),
    loaded_at           timestamptz not null default now()
);
create index reviews_customer_idx on smarketing.reviews (customer_id);
create index reviews_order_idx on smarketing.reviews (order_id);
create index reviews_created_at_idx on smarketing.reviews (created_at);

create table smarketing.social_posts (
    post_id        text primary key,
    platform       text not null,
    author_handle  text,
    customer_id    text,
    referral_code  text,
    body           text,
    followers      integer check (followers >= 0),
    url            text,
    posted_at      timestamptz not null,
    source         text not null,
    message_id     text,
    attribution    text check (attribution in ('token', 'window', 'none')),
    loaded_at      timestamptz not null default now()
);
create index social_posts_customer_idx on smarketing.social_posts (customer_id);

create table smarketing.email_events (
    event_id     text primary key,
    email        text,
    customer_id  text,
    event_type   text not null check (event_type in ('unsubscribe', 'bounce', 'complaint', 'open', 'click')),
    bounce_type  text check (bounce_type in ('hard', 'soft')),
    channel      text not null default 'email',
    message_id   text,
    occurred_at  timestamptz not null,
    source       text not null,
    loaded_at    timestamptz not null default now()
);
create index email_events_customer_idx on smarketing.email_events (customer_id, occurred_at);

-- Referral redemptions: a referred customer's first order that used another customer's code.
create table smarketing.referrals (
    referred_order_id     text primary key,
    referral_code         text not null,
    referrer_customer_id  text not null,
    referred_customer_id  text not null,
    revenue               numeric(14, 2) not null,
    redeemed_at           timestamptz not null,
    message_id            text,
    loaded_at             timestamptz not null default now()
);
create index referrals_referrer_idx on smarketing.referrals (referrer_customer_id);
