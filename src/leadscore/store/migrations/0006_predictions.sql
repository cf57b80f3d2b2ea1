-- The predictive model's newest probability per lead (written by `leadscore predict` / learn.train),
-- read by the engine beside the points score (stage conditions on `probability`).
CREATE TABLE lead_predictions (
    lead_id       VARCHAR PRIMARY KEY,
    probability   {double} NOT NULL,
    model_version VARCHAR NOT NULL,
    as_of         {ts} NOT NULL,
    reasons       VARCHAR,
    computed_at   {ts} NOT NULL
);
