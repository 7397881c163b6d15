-- marketing.product_feedback
-- Grain: one row per product (sku) that was sold in an order placed up to the as-of time or named by a
-- review written by then. Reviews without a sku (about the whole order) are not counted here.
-- Parameters: :as_of (timestamptz), :min_rating (smallint, testimonials' floor). Uses smarketing.review_signals
-- and smarketing.mart_sku_days (sales as of :as_of). Rebuilt whole on every publish: one row per product.

with

-- Sales per product from smarketing.mart_sku_days (order lines summed per product and order day, as of this
-- publish: refreshed just before the build for the days that changed), instead of every order line.
sales as (
    select
        sku,
        sum(orders_count)::integer as orders_count,
        sum(units)::bigint as units_sold,
        sum(revenue)::numeric(14, 2) as revenue,
        max(last_ordered_at) as last_ordered_at
    from smarketing.mart_sku_days
    group by sku
),

-- the name on the latest order of each product (ties: the first name alphabetically; none when that order's
-- lines do not name it)
product_names as (
    select distinct on (sku) sku, last_name as product_name
    from smarketing.mart_sku_days
    order by sku, last_ordered_at desc
),

reviews as (
    select reviews.*, signals.sentiment, signals.is_lukewarm,
           (reviews.consent_to_publish and reviews.rating >= :min_rating
            and signals.quote is not null and signals.quote_sentiment > 0) as is_testimonial
    from smarketing.reviews as reviews
    join smarketing.review_signals as signals on signals.review_id = reviews.review_id
    where reviews.created_at <= :as_of
      and reviews.sku is not null
),

review_stats as (
    select
        sku,
        count(*)::integer as reviews_count,
        avg(rating)::numeric(3, 2) as avg_rating,
        avg(sentiment) as avg_sentiment,
        count(*) filter (where is_lukewarm)::integer as lukewarm_reviews,
        count(*) filter (where rating <= 2)::integer as low_ratings,
        count(*) filter (where rating = 5)::integer as ratings_5,
        count(*) filter (where rating = 4)::integer as ratings_4,
        count(*) filter (where rating = 3)::integer as ratings_3,
        count(*) filter (where rating = 2)::integer as ratings_2,
        count(*) filter (where rating = 1)::integer as ratings_1,
        count(*) filter (where is_testimonial)::integer as testimonials_count,
        max(created_at) as last_review_at
    from reviews
    group by sku
),

products as (
    select sku from sales
    union
    select sku from review_stats
),

final as (
    select
        products.sku,
        product_names.product_name,
        coalesce(sales.orders_count, 0) as orders_count,
        coalesce(sales.units_sold, 0) as units_sold,
        coalesce(sales.revenue, 0) as revenue,
        coalesce(review_stats.reviews_count, 0) as reviews_count,
        review_stats.reviews_count::double precision / nullif(sales.orders_count, 0) as review_rate,
        review_stats.avg_rating,
        review_stats.avg_sentiment,
        coalesce(review_stats.lukewarm_reviews, 0) as lukewarm_reviews,
        review_stats.lukewarm_reviews::double precision / nullif(review_stats.reviews_count, 0) as lukewarm_share,
        review_stats.low_ratings::double precision / nullif(review_stats.reviews_count, 0) as low_rating_share,
        coalesce(review_stats.ratings_5, 0) as ratings_5,
        coalesce(review_stats.ratings_4, 0) as ratings_4,
        coalesce(review_stats.ratings_3, 0) as ratings_3,
        coalesce(review_stats.ratings_2, 0) as ratings_2,
        coalesce(review_stats.ratings_1, 0) as ratings_1,
        coalesce(review_stats.testimonials_count, 0) as testimonials_count,
        review_stats.last_review_at
    from products
    left join sales on sales.sku = products.sku
    left join product_names on product_names.sku = products.sku
    left join review_stats on review_stats.sku = products.sku
)

select * from final
