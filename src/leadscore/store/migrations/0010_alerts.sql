-- Alerts the live service raised (one row per alert rule that fired for a lead), for the dashboard
-- and GET /api/alerts; the webhook itself goes through the outbox (outbox_messages.message_id = alert_id).
CREATE TABLE alerts (
    alert_id      VARCHAR PRIMARY KEY,
    lead_id       VARCHAR NOT NULL,
    name          VARCHAR NOT NULL,
    trigger       VARCHAR NOT NULL,
    type          VARCHAR NOT NULL,
    fired_at      {ts} NOT NULL,
    model_version VARCHAR NOT NULL,
    score         {double},
    prev_score    {double},
    tier          VARCHAR,
    prev_tier     VARCHAR,
    stage         VARCHAR,
    prev_stage    VARCHAR,
    cause         VARCHAR,
    cause_ref     VARCHAR,
    detail        {json}
);
CREATE INDEX alerts_time ON alerts (fired_at);
CREATE INDEX alerts_lead ON alerts (lead_id, fired_at);
