-- Envelope-encrypted secrets (src/vault/envelope.ts): upstream subject tokens now, vault
-- credentials later. Each row has its own data key, wrapped by the key-encryption key `kek_id`.
CREATE TABLE vault_secrets (
  handle      text        PRIMARY KEY,
  kind        text        NOT NULL,
  kek_id      text        NOT NULL,
  wrapped_key bytea       NOT NULL,
  iv          bytea       NOT NULL,
  ciphertext  bytea       NOT NULL,
  tag         bytea       NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz
);
CREATE INDEX vault_secrets_expires_at ON vault_secrets (expires_at) WHERE expires_at IS NOT NULL;

-- Every token Deputy issues through token exchange (JWT access tokens are not stored by
-- oidc-provider). Introspection, revocation and its cascade work from these rows.
CREATE TABLE token_records (
  jti            text        PRIMARY KEY,
  parent_jti     text,
  root_jti       text        NOT NULL,
  agent_id       text        NOT NULL,
  user_id        text        NOT NULL,
  -- The user attributes policy needs (email, tenant, groups, roles), carried along the chain.
  user_attrs     jsonb       NOT NULL DEFAULT '{}',
  issuer_id      text        NOT NULL,
  audience       text        NOT NULL,
  scope          text        NOT NULL,
  chain          jsonb       NOT NULL,
  depth          integer     NOT NULL,
  cnf_jkt        text,
  may_act        jsonb,
  upstream       text,
  issued_at      timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  revoked_at     timestamptz,
  revoked_reason text
);
CREATE INDEX token_records_parent ON token_records (parent_jti) WHERE parent_jti IS NOT NULL;
CREATE INDEX token_records_agent ON token_records (agent_id);
CREATE INDEX token_records_root ON token_records (root_jti);
CREATE INDEX token_records_expires_at ON token_records (expires_at);
