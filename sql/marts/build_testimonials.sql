-- marketing.testimonials
-- Grain: one row per review whose author agreed to publication (consent_to_publish), rated at least
-- :min_rating stars, with a positive best short quote. Quotes, their tone and the review's tone come from
-- smarketing.review_signals (computed once per review, refreshed before the build; migration 0014).
-- Parameters: :as_of (timestamptz), :min_rating (smallint). Rebuilt whole on every publish (one row per quote).

with

consented_reviews as (
    select *
    from smarketing.reviews
    where consent_to_publish
      and created_at <= :as_of
      and rating >= :min_rating
),

-- the name on the latest order that names each quoted product (ties: the first name alphabetically), from the
-- per-product-and-day partials in smarketing.mart_sku_days (orders up to :as_of), not from every order line
product_names as (
    select distinct on (sku) sku, last_named_name as product_name
    from smarketing.mart_sku_days
    where last_named_at is not null
    order by sku, last_named_at desc
),

quoted as (
    select
        reviews.*,
        signals.quote,
        signals.quote_sentiment,
        signals.sentiment,
        signals.title_redacted
    from consented_reviews as reviews
    join smarketing.review_signals as signals on signals.review_id = reviews.review_id
    where signals.quote is not null
      and signals.quote_sentiment > 0
),

final as (
    select
        quoted.review_id,
        quoted.customer_id,
        quoted.order_id,
        quoted.sku,
        product_names.product_name,
        quoted.rating,
        quoted.title_redacted as title,
        quoted.quote,
        char_length(quoted.quote) as quote_chars,
        quoted.quote_sentiment,
        quoted.sentiment,
        quoted.language,
        quoted.incentivized as is_incentivized,
        row_number() over (
            partition by coalesce(quoted.sku, '')
            order by quoted.rating desc, quoted.quote_sentiment desc, quoted.created_at desc, quoted.review_id
        )::integer as rank_for_sku,
        quoted.created_at
    from quoted
    left join product_names on product_names.sku = quoted.sku
)

select * from final
