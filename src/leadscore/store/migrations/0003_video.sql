-- The video catalog: what each video is, how long it runs and where it sits in the funnel.
-- stage is derived from category at import (top|middle|bottom|retention) unless given explicitly;
-- tags is a comma-separated list of topic tags (portable across DuckDB, PostgreSQL and Spark).
CREATE TABLE video_catalog (
    video_id    VARCHAR PRIMARY KEY,
    title       VARCHAR,
    duration    {double},
    category    VARCHAR,
    stage       VARCHAR,
    tags        VARCHAR,
    url         VARCHAR,
    imported_at {ts}
);
