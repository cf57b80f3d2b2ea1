-- The lead's newest message at or before the score's as_of, written with every live score:
-- the dashboard's "last activity" column and its "active within N days" filter read it here
-- instead of scanning the event log.
ALTER TABLE lead_scores ADD COLUMN last_activity_at {ts};
