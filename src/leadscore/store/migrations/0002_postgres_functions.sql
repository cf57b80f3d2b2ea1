-- postgres-only
-- A cast to double precision that answers NULL instead of failing (DuckDB and Spark have try_cast).
-- A plain SQL function so the planner inlines it.
CREATE OR REPLACE FUNCTION ls_num(t text) RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN t ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$'
                THEN t::double precision END
$$;
