-- duckdb-only
-- score_history's (lead_id, changed_at) index serves PostgreSQL's per-lead history reads. DuckDB never
-- uses a composite index for them (a lead's history is a sequential scan with or without it: 8-9 ms at
-- 5M rows), and keeping it up to date cost every live pass: inserting and committing 5,000 history rows
-- took 33 ms with it against 15 ms without (5M rows held), and the first write after opening the store
-- ~0.25 s to load it (bench/RESULTS.md, freshness, session 18).
DROP INDEX IF EXISTS score_history_lead;
