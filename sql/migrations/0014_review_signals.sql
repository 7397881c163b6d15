-- Per-review text signals, computed once per review (issue 9) instead of on every scoring run and mart build.
-- Filled by the responses stage in the same transaction that loads a review (so a review is never visible
-- without its signals), and refreshed at the start of the marts build for rows whose content or rules changed.
-- Scoring reads `sentiment` by `review_id`: those two names are a contract between stages.

create table smarketing.review_signals (
    review_id        text primary key references smarketing.reviews (review_id) on delete cascade,
    content_hash     text not null,   -- md5 of what the signals are computed from (rating, title, body, consent, language)
    rules_version    text not null,   -- code version and settings the signals were computed with
    language         text,            -- ISO 639-1 of title + body; null when undetermined
    sentiment        double precision check (sentiment between -1 and 1),
    is_lukewarm      boolean not null,
    quote            text,
    quote_sentiment  double precision check (quote_sentiment between -1 and 1),
    title_redacted   text,
    computed_at      timestamptz not null
);

comment on table smarketing.review_signals is
    'Text signals of each review, computed once: language, VADER tone, the lukewarm rule, the best quote, the redacted title.';
comment on column smarketing.review_signals.content_hash is
    'md5 of rating, title, body, consent_to_publish and language of the review: a changed review is recomputed.';
comment on column smarketing.review_signals.rules_version is
    'Version of the signal code and the settings used (quote length, testimonial floor, lukewarm thresholds).';
comment on column smarketing.review_signals.sentiment is
    'VADER compound (-1..1) of title + body; null when the text is not English or there is no text.';
comment on column smarketing.review_signals.is_lukewarm is
    'The lukewarm rule for this review alone: 3-4 stars with neutral, faint or no words; 5 stars with faint words.';
comment on column smarketing.review_signals.quote is
    'Best short quote (contact details redacted) when the review may become a testimonial; null otherwise.';
comment on column smarketing.review_signals.title_redacted is
    'The title with email addresses, phone numbers and links replaced by placeholders.';
