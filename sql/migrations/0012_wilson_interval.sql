-- The Wilson score interval of a response rate (successes of trials at normal quantile z), shared by the
-- marts that report rates by message variant. No trials: rate and interval are null, not 0.
create or replace function smarketing.wilson_interval(
    successes bigint, trials bigint, z double precision,
    out rate double precision, out low double precision, out high double precision
) language sql immutable parallel safe as $$
    select
        w.p,
        case when w.n is not null then greatest(0, w.center - w.half) end,
        case when w.n is not null then least(1, w.center + w.half) end
    from (
        select
            i.n,
            i.p,
            (i.p + z * z / (2 * i.n)) / (1 + z * z / i.n) as center,
            z / (1 + z * z / i.n) * sqrt(i.p * (1 - i.p) / i.n + z * z / (4 * i.n * i.n)) as half
        from (select nullif(trials, 0)::double precision as n,
                     successes::double precision / nullif(trials, 0) as p) as i
    ) as w
$$;
