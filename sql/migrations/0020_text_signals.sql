-- Language and sentiment of a social post or NPS comment, computed once per distinct text (issue 9,
-- incremental cost). Scoring analysed these texts on every run; a day with one post the quick English test
-- could not place ("Best tee ever") loaded the language detector's profiles for ~1 s. Reviews have their
-- signals in review_signals; these are the other texts scoring reads. Keyed by the text's md5, not by
-- customer: nothing here says who wrote it.
create table smarketing.text_signals (
    text_md5     text primary key,                  -- md5 of the text without surrounding white space (UTF-8)
    method       text not null,                     -- what computed them; another method recomputes the row
    language     text not null,                     -- ISO 639-1, or 'und' when undetermined
    sentiment    double precision check (sentiment between -1 and 1),  -- VADER compound; null unless English
    computed_at  timestamptz not null default now()
);
comment on table smarketing.text_signals is
    'Language and VADER sentiment of post and NPS-comment texts, by md5 of the text: each text is analysed once.';
