-- Foreign keys dropped for a bulk load (a first load into the empty table they point at) and not yet restored,
-- as smarketing.deferred_indexes keeps dropped indexes. A key checked row by row costs a lookup and a row lock
-- of the referenced row for every inserted row; added back after the load it is checked by one join
-- (PostgreSQL's "Populating a Database"). Keeping the definitions here means a crash mid-load cannot lose a
-- key: every load restores whatever is listed for its tables before it starts.
create table smarketing.deferred_foreign_keys (
    table_name       text not null,   -- the referencing table, schema-qualified
    constraint_name  text not null,
    definition       text not null,   -- pg_get_constraintdef: FOREIGN KEY (...) REFERENCES ...
    deferred_at      timestamptz not null default now(),
    primary key (table_name, constraint_name)
);
