-- The live path's rule cache (leadscore.engine.partial): for each lead, the points and hits of every
-- rule of the model version that last scored it (rule order, then the stage event flags' counts),
-- the instant it was scored as of, and the first later instant at which time alone can move one of
-- its rules (NULL: none), and whether a half-life rule has hits (its score moves at every instant: the
-- time scheduler re-scores it on every tick; the others only once valid_until has passed). A batch of events re-derives only the rules its events can move and reads
-- the others here; it is written in the transaction that writes the lead's score.
CREATE TABLE live_rule_cache (
    lead_id VARCHAR PRIMARY KEY,
    model_version VARCHAR NOT NULL,
    as_of {ts} NOT NULL,
    valid_until {ts},
    moving BOOLEAN NOT NULL,
    pts {double}[] NOT NULL,
    hits BIGINT[] NOT NULL
);
