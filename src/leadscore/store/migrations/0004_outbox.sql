-- The durable outbox: alerts for outbound webhooks and CRM sync items, written in the same transaction
-- as the change that caused them, delivered by workers that keep all their state here (restart-safe).

-- Webhook endpoints (Standard Webhooks). event_types: comma-separated list, NULL = every type.
CREATE TABLE webhook_endpoints (
    endpoint_id     VARCHAR PRIMARY KEY,
    url             VARCHAR NOT NULL,
    secret          VARCHAR NOT NULL,
    event_types     VARCHAR,
    description     VARCHAR,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    allow_private   BOOLEAN NOT NULL DEFAULT FALSE,
    disabled_reason VARCHAR,
    paused_until    {ts},
    created_at      {ts} NOT NULL
);

-- One row per alert; body is the exact JSON sent, message_id the stable webhook-id.
CREATE SEQUENCE outbox_seq;
CREATE TABLE outbox_messages (
    seq        BIGINT PRIMARY KEY DEFAULT nextval('outbox_seq'),
    message_id VARCHAR NOT NULL UNIQUE,
    type       VARCHAR NOT NULL,
    lead_id    VARCHAR,
    body       VARCHAR NOT NULL,
    created_at {ts} NOT NULL
);
CREATE INDEX outbox_messages_lead ON outbox_messages (lead_id);

-- One row per (message, endpoint). status: pending | delivered | dead.
CREATE TABLE webhook_deliveries (
    message_seq     BIGINT NOT NULL,
    endpoint_id     VARCHAR NOT NULL,
    lead_id         VARCHAR,
    status          VARCHAR NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {ts},
    last_attempt_at {ts},
    last_status     INTEGER,
    last_error      VARCHAR,
    delivered_at    {ts},
    lease_until     {ts},
    created_at      {ts} NOT NULL,
    PRIMARY KEY (message_seq, endpoint_id)
);
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, lead_id, message_seq);
CREATE INDEX webhook_deliveries_status ON webhook_deliveries (status, next_attempt_at);

-- Every attempt, for `deliveries show` (attempt restarts at 1 after a manual replay).
CREATE TABLE webhook_attempts (
    message_seq BIGINT NOT NULL,
    endpoint_id VARCHAR NOT NULL,
    attempt     INTEGER NOT NULL,
    attempted_at {ts} NOT NULL,
    http_status INTEGER,
    error       VARCHAR
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (message_seq, endpoint_id);

-- CRM targets (HubSpot / Salesforce). mapping and options are JSON text; token may instead come from
-- the environment (LEADSCORE_CRM_<NAME>_TOKEN).
CREATE TABLE crm_targets (
    name            VARCHAR PRIMARY KEY,
    kind            VARCHAR NOT NULL,
    base_url        VARCHAR NOT NULL,
    mapping         VARCHAR,
    options         VARCHAR,
    token           VARCHAR,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    properties_ready BOOLEAN NOT NULL DEFAULT FALSE,
    paused_until    {ts},
    last_error      VARCHAR,
    limit_info      VARCHAR,
    created_at      {ts} NOT NULL
);

-- One row per (target, score change). status: pending | synced | superseded | skipped | dead.
-- The worker coalesces per lead: the newest pending row wins, older ones become superseded.
CREATE SEQUENCE crm_sync_seq;
CREATE TABLE crm_sync (
    seq             BIGINT PRIMARY KEY DEFAULT nextval('crm_sync_seq'),
    target          VARCHAR NOT NULL,
    lead_id         VARCHAR NOT NULL,
    as_of           {ts} NOT NULL,
    score_values    VARCHAR NOT NULL,
    status          VARCHAR NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at {ts},
    last_attempt_at {ts},
    last_status     INTEGER,
    last_error      VARCHAR,
    synced_at       {ts},
    lease_until     {ts},
    created_at      {ts} NOT NULL
);
CREATE INDEX crm_sync_pending ON crm_sync (target, status, lead_id);
