-- No query reads token_records by root_jti (lineage walks parent_jti; revocation cascades by
-- parent_jti and agent_id; the purge by expires_at), yet every issued token paid an insert into
-- this index, inside the token exchange's one statement (issue 16, sixth round).
DROP INDEX IF EXISTS token_records_root;
