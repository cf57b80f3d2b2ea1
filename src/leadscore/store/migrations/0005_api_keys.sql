-- API keys of the HTTP service: admin, read and write. Only a hash of each token is kept (the token
-- is shown once, when the key is created); revoked keys stay listed with the instant of revocation.
CREATE TABLE api_keys (
    key_id     VARCHAR PRIMARY KEY,
    name       VARCHAR NOT NULL,
    role       VARCHAR NOT NULL CHECK (role IN ('admin', 'read', 'write')),
    token_hash VARCHAR NOT NULL UNIQUE,
    prefix     VARCHAR NOT NULL,
    rate_limit {double},
    burst      {double},
    created_at {ts} NOT NULL,
    revoked_at {ts}
);
