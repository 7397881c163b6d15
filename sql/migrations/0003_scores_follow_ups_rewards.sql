-- Scoring outputs in the core schema, kept as history; the marts in schema marketing are built from these.

-- One row per customer and scoring date: the advocate score and everything that explains it.
create table smarketing.advocate_scores (
    customer_id         text not null,
    score_date          date not null,               -- the scoring run's logical date
    advocate_score      numeric(5, 1) not null check (advocate_score between 0 and 100),
    segment             text not null check (segment in
                        ('champion', 'advocate', 'promising', 'lukewarm', 'at_risk', 'detractor', 'silent')),
    is_lukewarm         boolean not null default false,
    nps_class           text check (nps_class in ('promoter', 'passive', 'detractor')),
    last_rating         smallint,
    sentiment           double precision,            -- VADER compound of the latest English text, -1..1
    reviews_count       integer not null default 0,
    social_posts_count  integer not null default 0,
    social_reach        bigint not null default 0,
    referrals_count     integer not null default 0,
    referral_revenue    numeric(14, 2) not null default 0,
    orders_count        integer not null default 0,
    lifetime_value      numeric(14, 2) not null default 0,
    recency_days        integer,
    rfm_r               smallint,
    rfm_f               smallint,
    rfm_m               smallint,
    expected_purchases_90d  double precision,
    predicted_value_90d     numeric(14, 2),
    reasons             text not null default '',    -- plain words for marketers, '; '-separated
    scored_at           timestamptz not null,
    primary key (customer_id, score_date)
);
create index advocate_scores_date_idx on smarketing.advocate_scores (score_date);

-- The closed loop: one open item per customer and reason, updated (never duplicated) by later runs.
create table smarketing.follow_ups (
    customer_id          text not null,
    reason               text not null,               -- lukewarm | at_risk | detractor
    priority             smallint not null check (priority between 1 and 5),   -- 1 = call first
    owner_team           text not null,               -- sales | support | customer_success
    review_excerpt       text,
    suggested_questions  text not null,               -- newline-separated probing questions
    status               text not null default 'open' check (status in ('open', 'contacted', 'resolved', 'dismissed')),
    outcome              text,
    created_at           timestamptz not null,
    updated_at           timestamptz not null,
    primary key (customer_id, reason)
);

-- Rewards for actions (referral converted, share posted, repeat purchase), never for a rating.
create table smarketing.rewards (
    customer_id   text not null,
    reason        text not null check (reason in ('referral_converted', 'social_share', 'repeat_purchase')),
    reward_code   text not null unique,
    source_id     text,                               -- the referral order, post or order that earned it
    issued_at     timestamptz not null,
    primary key (customer_id, reason, source_id)
);
