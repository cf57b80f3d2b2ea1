-- Typed video columns on the event log, filled at ingest from a track event's properties
-- (leadscore.events.normalize.video_values), so that the video reconstruction reads columns, not JSON.
-- Old rows are backfilled here by the same rule: text as the JSON ->> accessor gives it; numbers
-- from JSON numbers or numeric text (the regex of ls_num), anything else NULL.
ALTER TABLE events ADD COLUMN video_session_id VARCHAR;
ALTER TABLE events ADD COLUMN video_asset_id VARCHAR;
ALTER TABLE events ADD COLUMN video_position {double};
ALTER TABLE events ADD COLUMN video_seek_position {double};
ALTER TABLE events ADD COLUMN video_total_length {double};
ALTER TABLE events ADD COLUMN video_playback_rate {double};
UPDATE events SET
    video_session_id = (properties->>'session_id'),
    video_asset_id = COALESCE((properties->>'content_asset_id'), (properties->>'asset_id')),
    video_position = CASE WHEN (properties->>'position') ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' THEN CAST((properties->>'position') AS {double}) END,
    video_seek_position = CASE WHEN (properties->>'seek_position') ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' THEN CAST((properties->>'seek_position') AS {double}) END,
    video_total_length = CASE WHEN (properties->>'total_length') ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' THEN CAST((properties->>'total_length') AS {double}) END,
    video_playback_rate = CASE WHEN (properties->>'playback_rate') ~ '^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$' THEN CAST((properties->>'playback_rate') AS {double}) END
WHERE type = 'track';
-- The view's e.* was expanded when it was made (PostgreSQL): make it again to carry the new columns.
DROP VIEW resolved_events;
CREATE VIEW resolved_events AS
SELECT e.*, COALESCE(mu.lead_id, e.user_id, ma.lead_id) AS lead_id
FROM events e
LEFT JOIN identities mu ON mu.alias_id = e.user_id
LEFT JOIN identities ma ON ma.alias_id = e.anonymous_id;
