-- Secondary indexes dropped for a bulk load (a first load into an empty table) and not yet rebuilt.
-- Building an index once after a bulk load is several times cheaper than maintaining it row by row;
-- keeping the definitions here means a crash mid-load cannot lose an index: every load rebuilds
-- whatever is listed before it starts.
create table smarketing.deferred_indexes (
    index_name   text primary key,
    table_name   text not null,
    definition   text not null,
    deferred_at  timestamptz not null default now()
);
