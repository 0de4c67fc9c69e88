-- Connections (src/vault/connections): downstream APIs the gateway forwards to. Settings are
-- plain JSON; the credential (API key, client secret) is a vault secret referenced by handle.
CREATE TABLE connections (
  id                text        PRIMARY KEY,
  kind              text        NOT NULL CHECK (kind IN ('api_key', 'oauth2_client_credentials', 'oauth2_user', 'on_behalf_of')),
  settings          jsonb       NOT NULL,
  secret_handle     text,
  secret_version    integer     NOT NULL DEFAULT 0,
  secret_updated_at timestamptz,
  source            text        NOT NULL CHECK (source IN ('config', 'api')),
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Per-user grants of `oauth2_user` connections: the refresh token and the current access token
-- (both vault secrets). The row is also the lock that serialises refreshes across instances.
CREATE TABLE connection_grants (
  connection_id     text        NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
  user_id           text        NOT NULL,
  refresh_handle    text,
  access_handle     text,
  access_expires_at timestamptz,
  scope             text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  refreshed_at      timestamptz,
  PRIMARY KEY (connection_id, user_id)
);

-- Connect flows (authorization code + PKCE): created with a 424 (the ticket's hash is the id),
-- started by the user's browser (state hash, PKCE verifier in the vault), completed once.
CREATE TABLE connect_flows (
  id              text        PRIMARY KEY,
  connection_id   text        NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
  user_id         text        NOT NULL,
  agent_id        text,
  state_hash      text        UNIQUE,
  verifier_handle text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  expires_at      timestamptz NOT NULL,
  started_at      timestamptz,
  completed_at    timestamptz
);
CREATE INDEX connect_flows_expires_at ON connect_flows (expires_at);
