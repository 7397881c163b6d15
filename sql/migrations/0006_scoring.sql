-- Advocate scoring (smarketing_score): NPS answers as a response source, the per-run working tables the
-- scoring tasks share, and the fitted value model of each run (kept as history, so a score can be explained).

-- NPS answers ("How likely are you to recommend us?", 0-10) with the customer's own words, where collected.
create table smarketing.nps_answers (
    answer_id    text primary key,
    customer_id  text not null,
    score        smallint not null check (score between 0 and 10),
    comment      text,
    language     text,
    answered_at  timestamptz not null,
    source       text not null,
    message_id   text,                               -- the ask that produced it, when attributed
    loaded_at    timestamptz not null default now()
);
create index nps_answers_customer_idx on smarketing.nps_answers (customer_id, answered_at);

-- Per-customer facts for one scoring date, built in SQL by the prepare step and read by partition.
-- Unlogged: a working table, rebuilt from the core tables by any rerun.
create unlogged table smarketing.score_inputs (
    score_date           date not null,
    partition_no         integer not null,           -- hash(customer_id) mod partitions
    customer_id          text not null,
    orders_count         integer not null,
    lifetime_value       numeric(14, 2) not null,    -- kept orders (not cancelled, not returned)
    recency_days         double precision,           -- since the last order
    last_order_returned  boolean not null,
    x                    integer,                    -- repeat purchase days (BG/NBD)
    t_x_days             double precision,           -- first to last purchase day
    T_days               double precision,           -- first purchase day to the scoring date
    mean_repeat_value    double precision,           -- mean value of a repeat purchase day
    rfm_r                smallint,
    rfm_f                smallint,
    rfm_m                smallint,
    reviews_count        integer not null,
    last_rating          smallint,
    review_text          text,                       -- latest review: title and body
    review_language      text,
    review_age_days      double precision,
    nps_score            smallint,
    nps_comment          text,
    nps_age_days         double precision,
    social_posts_count   integer not null,
    social_reach         bigint not null,
    post_text            text,
    referrals_count      integer not null,
    referral_revenue     numeric(14, 2) not null,
    complaints_count     integer not null,
    primary key (score_date, customer_id)
);
create index score_inputs_partition_idx on smarketing.score_inputs (score_date, partition_no);

-- Follow-up candidates written by each partition; finalize ranks them over all partitions into follow_ups.
create unlogged table smarketing.follow_up_candidates (
    score_date           date not null,
    partition_no         integer not null,
    customer_id          text not null,
    reason               text not null,
    owner_team           text not null,
    review_excerpt       text,
    suggested_questions  text not null,
    priority_weight      double precision not null,  -- predicted value x recency decay; higher = call first
    primary key (score_date, customer_id, reason)
);
create index follow_up_candidates_partition_idx on smarketing.follow_up_candidates (score_date, partition_no);

-- The value model fitted for each scoring date: BG/NBD and Gamma-Gamma parameters (null = fallback used).
create table smarketing.score_models (
    score_date             date primary key,
    scored_at              timestamptz not null,
    partitions             integer not null,
    customers              bigint not null,
    buyers                 bigint not null,
    bgnbd_r                double precision,
    bgnbd_alpha            double precision,
    bgnbd_a                double precision,
    bgnbd_b                double precision,
    bgnbd_log_likelihood   double precision,
    gg_p                   double precision,
    gg_q                   double precision,
    gg_gamma               double precision,
    population_mean_value  double precision not null,
    time_unit_days         double precision not null,
    notes                  text not null default ''
);
