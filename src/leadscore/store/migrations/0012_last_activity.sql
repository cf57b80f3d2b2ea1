-- The lead's newest message at or before the score's as_of, written with every live score:
-- the dashboard's "last activity" column and its "active within N days" filter read it here
-- instead of scanning the event log.
ALTER TABLE lead_scores ADD COLUMN last_activity_at {ts};
-- Scores made before this column existed: the newest message as of their as_of.
UPDATE lead_scores SET last_activity_at = (
    SELECT max(e.ts) FROM resolved_events e WHERE e.lead_id = lead_scores.lead_id AND e.ts <= lead_scores.as_of);
