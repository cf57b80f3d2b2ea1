-- Lookups by lead id alone: a lead's traits (its page, the lead list, targeted re-scores) and the
-- aliases of a lead. DuckDB does not use the composite (lead_id, key) primary key for lead_id alone.
CREATE INDEX lead_traits_lead ON lead_traits (lead_id);
CREATE INDEX identities_lead ON identities (lead_id);
