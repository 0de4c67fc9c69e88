-- Clients identified by a Client ID Metadata Document become agents (src/agents/document-client.ts):
-- `source = 'client_id_metadata'`, the document URL in `client_id_url`, no keys of their own (a
-- public client binds its tokens with DPoP; a private_key_jwt one publishes its keys in the
-- document). Every other agent keeps exactly one of `jwks` / `jwks_uri` and no URL.
ALTER TABLE agents DROP CONSTRAINT agents_source_check;
ALTER TABLE agents ADD CONSTRAINT agents_source_check CHECK (source IN ('config', 'api', 'client_id_metadata'));
ALTER TABLE agents DROP CONSTRAINT agents_check;
ALTER TABLE agents ADD COLUMN client_id_url text;
ALTER TABLE agents ADD CONSTRAINT agents_keys_check CHECK (
  CASE WHEN source = 'client_id_metadata'
    THEN jwks IS NULL AND jwks_uri IS NULL AND client_id_url IS NOT NULL
    ELSE (jwks IS NULL) <> (jwks_uri IS NULL) AND client_id_url IS NULL
  END
);
CREATE UNIQUE INDEX agents_client_id_url ON agents (client_id_url) WHERE client_id_url IS NOT NULL;
