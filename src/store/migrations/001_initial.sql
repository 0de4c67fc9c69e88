-- oidc-provider models (sessions, grants, replay detection, opaque tokens…), one JSONB row each.
CREATE TABLE oidc_models (
  model       text        NOT NULL,
  id          text        NOT NULL,
  payload     jsonb       NOT NULL,
  grant_id    text,
  uid         text,
  user_code   text,
  expires_at  timestamptz,
  consumed_at timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX oidc_models_grant_id ON oidc_models (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_models_uid ON oidc_models (uid) WHERE uid IS NOT NULL;
CREATE INDEX oidc_models_user_code ON oidc_models (user_code) WHERE user_code IS NOT NULL;
CREATE INDEX oidc_models_expires_at ON oidc_models (expires_at) WHERE expires_at IS NOT NULL;

-- The agent registry: agents are OAuth clients (private_key_jwt) with delegation limits.
CREATE TABLE agents (
  id                   text        PRIMARY KEY,
  name                 text        NOT NULL,
  owner                text        NOT NULL,
  scopes               jsonb       NOT NULL DEFAULT '[]',
  audiences            jsonb       NOT NULL DEFAULT '[]',
  max_delegation_depth integer     NOT NULL DEFAULT 3,
  status               text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  jwks                 jsonb,
  jwks_uri             text,
  source               text        NOT NULL CHECK (source IN ('config', 'api')),
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  CHECK ((jwks IS NULL) <> (jwks_uri IS NULL))
);
