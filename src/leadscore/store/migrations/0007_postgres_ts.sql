-- postgres-only
-- ISO-8601 text → timestamp (UTC, naive) or NULL, like try_cast in DuckDB and Spark.
CREATE OR REPLACE FUNCTION ls_ts(t text) RETURNS timestamp
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    RETURN (t::timestamptz AT TIME ZONE 'UTC');
EXCEPTION WHEN others THEN
    RETURN NULL;
END $$;
