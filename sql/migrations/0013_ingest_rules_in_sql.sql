-- Safe casts for the ingest row rules, which run in SQL where the rows land: a value that is not a
-- number or not a timestamp becomes null (and the rule that sees a non-null text with a null cast
-- quarantines the row) instead of failing the whole statement.
--
-- PostgreSQL's own input accepts more than a shop export should ('yesterday', '01/10/2026', 'NaN',
-- '0x1F', '1_000'), so a cheap shape check comes first: a timestamp starts with an ISO 8601 date
-- (YYYY-MM-DD); a number uses only digits, sign, point, exponent and spaces. Regular expressions would
-- say it more exactly but cost 5-20x more per row here. PostgreSQL 16+ then checks the value with
-- pg_input_is_valid (no subtransaction; the functions are inlined into the calling query, which needs
-- them STABLE like their bodies); older servers use an exception block, slower but the same answers.
-- Called with a literal (not a column), the planner may fold the cast before the check and raise.

do $body$
begin
    if current_setting('server_version_num')::int >= 160000 then
        create or replace function smarketing.try_timestamptz(value text) returns timestamptz
        language sql stable parallel safe as $f$
            select case when left(value, 10) like '____-__-__' and pg_input_is_valid(value, 'timestamptz')
                        then value::timestamptz end
        $f$;
        create or replace function smarketing.try_numeric(value text) returns numeric
        language sql stable parallel safe as $f$
            select case when translate(value, '0123456789+-.eE ', '') = '' and pg_input_is_valid(value, 'numeric')
                        then value::numeric end
        $f$;
        create or replace function smarketing.try_integer(value text) returns integer
        language sql stable parallel safe as $f$
            select case when translate(value, '0123456789+-. ', '') = '' and pg_input_is_valid(value, 'numeric')
                             and value::numeric = trunc(value::numeric) and abs(value::numeric) <= 2147483647
                        then value::numeric::integer end
        $f$;
    else
        create or replace function smarketing.try_timestamptz(value text) returns timestamptz
        language plpgsql stable parallel safe as $f$
        begin
            if left(value, 10) not like '____-__-__' then
                return null;
            end if;
            return value::timestamptz;
        exception when others then
            return null;
        end
        $f$;
        create or replace function smarketing.try_numeric(value text) returns numeric
        language plpgsql stable parallel safe as $f$
        begin
            if translate(value, '0123456789+-.eE ', '') <> '' then
                return null;
            end if;
            return value::numeric;
        exception when others then
            return null;
        end
        $f$;
        create or replace function smarketing.try_integer(value text) returns integer
        language plpgsql stable parallel safe as $f$
        declare
            number numeric;
        begin
            if translate(value, '0123456789+-. ', '') <> '' then
                return null;
            end if;
            number := value::numeric;
            if number <> trunc(number) or abs(number) > 2147483647 then
                return null;
            end if;
            return number::integer;
        exception when others then
            return null;
        end
        $f$;
    end if;
end
$body$;

comment on function smarketing.try_timestamptz(text) is
    'The text as timestamptz when it starts with an ISO 8601 date (YYYY-MM-DD) and PostgreSQL reads it; no offset means the session time zone (UTC in ingest); else null.';
comment on function smarketing.try_numeric(text) is
    'The text as numeric when it is a plain decimal number (optionally with an exponent); else null. NaN, Infinity, hex and 1_000 are null.';
comment on function smarketing.try_integer(text) is
    'The text as integer when it is a whole decimal number ("2" or "2.0") within the integer range; else null.';
