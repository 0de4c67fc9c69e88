-- Signed receipts (src/audit): one hash chain per agent. `receipt_chains` holds each chain's
-- head; appending locks that row (SELECT … FOR UPDATE) in the transaction that inserts the
-- receipt, so appends for one agent are linear across connections and instances. The primary
-- key on (agent_id, seq) refuses a fork even if a caller forgot the lock.
CREATE TABLE receipt_chains (
  agent_id   text        PRIMARY KEY,
  -- The last receipt's seq (0 before the first) and its hash (the genesis value before the first).
  seq        bigint      NOT NULL CHECK (seq >= 0),
  head       text        NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE receipts (
  agent_id   text        NOT NULL,
  seq        bigint      NOT NULL CHECK (seq >= 1),
  id         text        NOT NULL UNIQUE,
  hash       text        NOT NULL,
  prev       text        NOT NULL,
  -- The receipt itself: a compact JWS, stored exactly as signed (its hash is over these bytes).
  jws        text        NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (agent_id, seq)
);
