-- The event log, identities, traits, models and scores.
-- Placeholders: {json} JSON column type, {double} float type, {ts} timestamp type.
CREATE TABLE events (
    message_id   VARCHAR PRIMARY KEY,
    type         VARCHAR NOT NULL,
    event        VARCHAR,
    name         VARCHAR,
    user_id      VARCHAR,
    anonymous_id VARCHAR,
    group_id     VARCHAR,
    previous_id  VARCHAR,
    ts           {ts} NOT NULL,
    original_ts  {ts},
    sent_at      {ts},
    received_at  {ts} NOT NULL,
    properties   {json},
    context      {json}
);
CREATE INDEX events_user ON events (user_id);
CREATE INDEX events_anon ON events (anonymous_id);

-- Every id that is not itself a lead id (anonymousId, an aliased previousId) → its lead.
CREATE TABLE identities (
    alias_id VARCHAR PRIMARY KEY,
    lead_id  VARCHAR NOT NULL,
    ts       {ts} NOT NULL
);

CREATE TABLE leads (
    lead_id    VARCHAR PRIMARY KEY,
    created_at {ts} NOT NULL
);

-- Traits, one row per key, the newest (ts, message_id) wins whatever order messages arrive in.
-- Keys are flattened with dots (company.industry); the lead's account is the trait account_id.
CREATE TABLE lead_traits (
    lead_id    VARCHAR NOT NULL,
    key        VARCHAR NOT NULL,
    value      VARCHAR,
    num        {double},
    ts         {ts} NOT NULL,
    message_id VARCHAR NOT NULL,
    PRIMARY KEY (lead_id, key)
);

CREATE TABLE account_traits (
    account_id VARCHAR NOT NULL,
    key        VARCHAR NOT NULL,
    value      VARCHAR,
    num        {double},
    ts         {ts} NOT NULL,
    message_id VARCHAR NOT NULL,
    PRIMARY KEY (account_id, key)
);

CREATE TABLE models (
    version    VARCHAR PRIMARY KEY,
    name       VARCHAR NOT NULL,
    source     VARCHAR NOT NULL,
    created_at {ts} NOT NULL,
    active     BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE scores (
    lead_id       VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    as_of         {ts} NOT NULL,
    score         {double} NOT NULL,
    fit           {double} NOT NULL,
    engagement    {double} NOT NULL,
    tier          VARCHAR NOT NULL,
    stage         VARCHAR NOT NULL,
    grade         VARCHAR NOT NULL,
    disqualified  BOOLEAN NOT NULL,
    groups        {json},
    rules         {json},
    computed_at   {ts} NOT NULL,
    PRIMARY KEY (lead_id, model_version, as_of)
);

-- Conversion outcomes (won / lost / converted / sql ...) with their dates, for learning.
CREATE TABLE outcomes (
    lead_id VARCHAR NOT NULL,
    outcome VARCHAR NOT NULL,
    value   {double},
    ts      {ts},
    source  VARCHAR NOT NULL,
    PRIMARY KEY (lead_id, outcome, source)
);

-- Event rows with their lead resolved through identities; anonymous events nobody identified have lead_id NULL.
CREATE VIEW resolved_events AS
SELECT e.*, COALESCE(mu.lead_id, e.user_id, ma.lead_id) AS lead_id
FROM events e
LEFT JOIN identities mu ON mu.alias_id = e.user_id
LEFT JOIN identities ma ON ma.alias_id = e.anonymous_id;

CREATE VIEW resolved_traits AS
SELECT lead_id, key, value, num FROM (
    SELECT COALESCE(m.lead_id, t.lead_id) AS lead_id, t.key, t.value, t.num,
           row_number() OVER (PARTITION BY COALESCE(m.lead_id, t.lead_id), t.key
                              ORDER BY t.ts DESC, t.message_id DESC) AS rn
    FROM lead_traits t LEFT JOIN identities m ON m.alias_id = t.lead_id
) x WHERE rn = 1;

-- The scored population: every lead id that is not an alias of another.
CREATE VIEW population AS
SELECT l.lead_id FROM leads l
WHERE NOT EXISTS (SELECT 1 FROM identities i WHERE i.alias_id = l.lead_id);
