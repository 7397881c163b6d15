-- marketing.testimonials
-- Grain: one row per review whose author agreed to publication (consent_to_publish), rated at least
-- :min_rating stars, with a positive best short quote. Quotes, their tone and the review's tone come from
-- smarketing.review_signals (computed once per review, refreshed before the build; migration 0014).
-- Parameters: :as_of (timestamptz), :min_rating (smallint).

with

consented_reviews as (
    select *
    from smarketing.reviews
    where consent_to_publish
      and created_at <= :as_of
      and rating >= :min_rating
),

-- the name on the latest order of each quoted product (ties: the first name alphabetically); only the
-- products that have a testimonial are looked up, and by hash aggregates instead of sorting every order line
quoted_skus as (
    select distinct reviews.sku
    from consented_reviews as reviews
    join smarketing.review_signals as signals on signals.review_id = reviews.review_id
    where reviews.sku is not null and signals.quote is not null and signals.quote_sentiment > 0
),

latest_orders as (
    select items.sku, max(orders.ordered_at) as ordered_at
    from smarketing.order_items as items
    join smarketing.orders as orders on orders.order_id = items.order_id
    where items.product_name is not null
      and items.sku in (select sku from quoted_skus)
    group by items.sku
),

product_names as (
    select distinct on (items.sku) items.sku, items.product_name
    from smarketing.order_items as items
    join smarketing.orders as orders on orders.order_id = items.order_id
    join latest_orders on latest_orders.sku = items.sku and latest_orders.ordered_at = orders.ordered_at
    where items.product_name is not null
    order by items.sku, items.product_name
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
