-- Responses (issue 4): what ingestion of reviews, posts, events and referrals needs beyond 0002.

-- The first referrer keeps the credit: a referred customer is counted once, whatever codes they use later.
create unique index referrals_referred_customer_uidx on smarketing.referrals (referred_customer_id);

-- Duplicate-review detection (same customer, order and product) and attribution lookups.
create index reviews_customer_order_sku_idx on smarketing.reviews (customer_id, order_id, sku);
create index social_posts_referral_code_idx on smarketing.social_posts (upper(referral_code))
    where referral_code is not null;
create index outreach_messages_customer_kind_sent_idx on smarketing.outreach_messages (customer_id, kind, sent_at)
    where status = 'sent';
create index customer_contacts_phone_idx on smarketing.customer_contacts (phone) where phone is not null;

-- Where a review's language came from: the source said so, langdetect found it, or it was too short to tell.
alter table smarketing.reviews
    add column language_source text check (language_source in ('source', 'langdetect', 'undetermined'));
comment on column smarketing.reviews.language is
    'ISO 639-1 language of title and body: given by the source, else detected by langdetect; null when too short to tell.';
