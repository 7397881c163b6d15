-- Ingest now stores customers' first name, phone, country and time zone trimmed, blank as null (the rule of
-- smarketing_tasks/ingest/rules.py: TRIMMED_CUSTOMER_COLUMNS), and the customers suite's patterns allow nothing
-- after a value. Rows stored before keep what the source sent: trim them the same way, so that the audit does
-- not start refusing a padded phone or a country ending in a newline that it passed before the upgrade.
-- Only rows that change are written (the change-log triggers then record exactly those customers).
update smarketing.customers
set country = nullif(btrim(country, E' \t\r\n\f'), ''),
    time_zone = nullif(btrim(time_zone, E' \t\r\n\f'), '')
where country is distinct from nullif(btrim(country, E' \t\r\n\f'), '')
   or time_zone is distinct from nullif(btrim(time_zone, E' \t\r\n\f'), '');

update smarketing.customer_contacts
set first_name = nullif(btrim(first_name, E' \t\r\n\f'), ''),
    phone = nullif(btrim(phone, E' \t\r\n\f'), '')
where first_name is distinct from nullif(btrim(first_name, E' \t\r\n\f'), '')
   or phone is distinct from nullif(btrim(phone, E' \t\r\n\f'), '');
