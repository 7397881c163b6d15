-- SMS events name a phone, and responses find the customer by the phone's digits
-- (regexp_replace(phone, '[^0-9+]', '', 'g')). Without an index on that expression each such event scanned
-- every contact: hours for a day of SMS events against a year of customers.
create index if not exists customer_contacts_phone_digits_idx
    on smarketing.customer_contacts (regexp_replace(phone, '[^0-9+]', '', 'g'));
