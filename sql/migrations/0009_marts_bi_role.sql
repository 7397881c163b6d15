-- Read-only access for BI tools (issue 7): role smarketing_bi may read schema marketing (the marts) and nothing
-- else: no core tables, no contact data, no staging schema.
--
-- Roles are cluster-wide, so several warehouses (or test databases) on one server share this role: create it
-- only when missing, and tolerate a concurrent migration creating it first. NOLOGIN: it holds privileges
-- only; give people and tools their own login roles that are members, e.g.
--     create role metabase login password '...' in role smarketing_bi;
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'smarketing_bi') then
        create role smarketing_bi nologin;
        comment on role smarketing_bi is 'Read-only access to schema marketing (smarketing-loop marts) for BI tools.';
    end if;
exception
    when duplicate_object or unique_violation then
        null;  -- another database's migration created it at the same moment
end
$$;

-- In this database: read the marts, nothing else.
revoke all on schema smarketing from smarketing_bi;
revoke all on all tables in schema smarketing from smarketing_bi;
grant usage on schema marketing to smarketing_bi;
grant select on all tables in schema marketing to smarketing_bi;
-- Tables created later in schema marketing by the role that runs migrations are readable too. The publisher
-- also grants on every mart it builds, because marts arrive by a schema swap, which default privileges miss.
alter default privileges in schema marketing grant select on tables to smarketing_bi;
