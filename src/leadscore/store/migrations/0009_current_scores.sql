-- The live view of every lead (latest score of the active model) and the history of its changes.
CREATE TABLE lead_scores (
    lead_id       VARCHAR PRIMARY KEY,
    model_version VARCHAR NOT NULL,
    as_of         {ts} NOT NULL,
    score         {double} NOT NULL,
    fit           {double} NOT NULL,
    engagement    {double} NOT NULL,
    tier          VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    grade         VARCHAR NOT NULL,
    disqualified  BOOLEAN NOT NULL,
    probability   {double},
    groups        {json},
    rules         {json},
    updated_at    {ts} NOT NULL
);
CREATE INDEX lead_scores_rank ON lead_scores (score);

-- One row per change of a lead's score, tier or stage, with its cause:
-- cause = 'event' (cause_ref: the messageIds), 'time' (decay, windows, inactivity), 'model' (cause_ref: version).
CREATE TABLE score_history (
    lead_id       VARCHAR NOT NULL,
    changed_at    {ts} NOT NULL,
    model_version VARCHAR NOT NULL,
    score         {double} NOT NULL,
    fit           {double} NOT NULL,
    engagement    {double} NOT NULL,
    tier          VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    prev_score    {double},
    prev_tier     VARCHAR,
    prev_stage    VARCHAR,
    cause         VARCHAR NOT NULL,
    cause_ref     VARCHAR
);
CREATE INDEX score_history_lead ON score_history (lead_id, changed_at);
