-- An agent's deletion removes the oidc-provider rows of its client (grants, refresh tokens,
-- codes, sessions: src/oauth/oidc-provider/adapter.ts deleteClientGrants), found by the client id
-- in the payload. Without an index that was a sequential scan of oidc_models, whose bulk under
-- traffic is the single-use rows of replay detection (every DPoP proof's jti, payload '{}').
-- Partial: those rows carry no clientId, so they add no entry and no insert cost here
-- (issue 16, seventh round).
CREATE INDEX oidc_models_client_id ON oidc_models ((payload->>'clientId')) WHERE (payload->>'clientId') IS NOT NULL;
