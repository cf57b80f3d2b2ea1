-- The live path's rule cache (leadscore.engine.partial): for each lead, the points and hits of every
-- rule of the model version that last scored it (rule order, then the stage event flags' counts),
-- the instant it was scored as of, and the first later instant at which time alone can move one of
-- its rules (NULL: none). A batch of events re-derives only the rules its events can move and reads
-- the others here; it is written in the transaction that writes the lead's score.
CREATE TABLE live_rule_cache (
    lead_id VARCHAR PRIMARY KEY,
    model_version VARCHAR NOT NULL,
    as_of {ts} NOT NULL,
    valid_until {ts},
    pts {double}[] NOT NULL,
    hits BIGINT[] NOT NULL
);
