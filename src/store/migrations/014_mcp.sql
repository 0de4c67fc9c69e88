-- MCP gateway (src/mcp): upstream MCP servers and their signed tool pins. Numbered after the
-- issue (14) so parallel branches' migrations do not collide on a version.
CREATE TABLE mcp_servers (
  id          text        PRIMARY KEY,
  settings    jsonb       NOT NULL,
  source      text        NOT NULL CHECK (source IN ('config', 'api')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One pin per (server, tool): the JWS as signed, its digest, and the approved definition (RFC
-- 8785 canonical JSON text) so a mismatch can name the members that changed. Re-approval
-- replaces the row.
CREATE TABLE mcp_tool_pins (
  server_id   text        NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
  tool        text        NOT NULL,
  digest      text        NOT NULL,
  jws         text        NOT NULL,
  definition  text,
  signer      text        NOT NULL CHECK (signer IN ('deputy', 'publisher')),
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (server_id, tool)
);
