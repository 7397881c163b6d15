-- A full scoring run rescores everyone, so of the change log it claims it needs only how many customers changed
-- (score_runs.changed, and the value model's refit rule adds those up). It wrote each claimed customer into
-- score_queue instead: 602,409 logged rows at 1,000,000 purchases, 11 s against 3-4 s for the claim's delete
-- and count alone, prepare's largest serial step. The count is one row per date, here. A retry after the claim
-- committed finds those changes gone from the log and adds what it claims itself; a customer claimed by both
-- attempts then counts twice (the refit comes at most that much sooner). Finalize deletes the date's row, as it
-- deletes the date's queue.
create table smarketing.score_claims (
    score_date  date primary key,
    changed     integer not null check (changed >= 0)
);
comment on table smarketing.score_claims is
    'Per scoring date of a full run: how many customers the run claimed from the change log (a count, no ids).';
