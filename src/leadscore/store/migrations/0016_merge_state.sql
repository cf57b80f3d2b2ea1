-- Live scores merged from the rule cache and a batch's messages alone (leadscore.engine.partial):
-- each stored message's commit number (``seq``: one value per ingest transaction, from the sequence
-- events_seq, in commit order), so that a score computed from the log can say exactly which messages
-- it counted (those with seq up to a watermark), and what each cache row needs to take new messages
-- without its lead's history: the watermark it counted up to, the lead's newest message time, and per
-- rule the unrounded, uncapped points (``raw``), the newest counted occurrence (``last``) and, for
-- aggregate rules, their (rule, bucket, value, measure) entries. Old rows have seq NULL: counted by
-- every read, and a cache row without a watermark is never merged into.
CREATE SEQUENCE events_seq;
ALTER TABLE events ADD COLUMN seq BIGINT;
-- The view's e.* was expanded when it was made (PostgreSQL): make it again to carry the new column.
DROP VIEW resolved_events;
CREATE VIEW resolved_events AS
SELECT e.*, COALESCE(mu.lead_id, e.user_id, ma.lead_id) AS lead_id
FROM events e
LEFT JOIN identities mu ON mu.alias_id = e.user_id
LEFT JOIN identities ma ON ma.alias_id = e.anonymous_id;
ALTER TABLE live_rule_cache ADD COLUMN seq BIGINT;
ALTER TABLE live_rule_cache ADD COLUMN last_activity {ts};
ALTER TABLE live_rule_cache ADD COLUMN raw {double}[];
ALTER TABLE live_rule_cache ADD COLUMN last {ts}[];
ALTER TABLE live_rule_cache ADD COLUMN agg_rule BIGINT[];
ALTER TABLE live_rule_cache ADD COLUMN agg_bucket VARCHAR[];
ALTER TABLE live_rule_cache ADD COLUMN agg_value VARCHAR[];
ALTER TABLE live_rule_cache ADD COLUMN agg_x {double}[];
