-- How far each durable ingestion log (service/ingest_log.py) has been applied: written in the same
-- transaction as the events it applies, so a restart replays exactly the entries after it.
CREATE TABLE ingest_log_position (
    log_id VARCHAR PRIMARY KEY,
    seq    BIGINT NOT NULL
);
