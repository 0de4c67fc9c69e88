-- Budgets (src/budgets): limits on requests, tokens or cost per agent / user / connection /
-- user×agent / model, reserved before a call and settled after it. Numbered after the issue (15)
-- so parallel branches' migrations do not collide on a version.
CREATE TABLE budgets (
  id            text        PRIMARY KEY,
  name          text,
  -- Selectors: a budget applies to a call when every selector it sets matches; NULL = any.
  agent_id      text,
  user_id       text,
  connection_id text,
  model         text,
  unit          text        NOT NULL CHECK (unit IN ('requests', 'input_tokens', 'output_tokens', 'cost')),
  "window"      text        NOT NULL CHECK ("window" IN ('day', 'month', 'total')),
  "limit"       bigint      NOT NULL CHECK ("limit" >= 0),
  source        text        NOT NULL CHECK (source IN ('config', 'api')),
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now()
);

-- One row per budget and window: the counter every reservation locks (conditional UPDATE).
-- `window_start` is the window's first instant (1970-01-01 for `total`).
CREATE TABLE budget_usage (
  budget_id    text        NOT NULL REFERENCES budgets (id) ON DELETE CASCADE,
  window_start timestamptz NOT NULL,
  spent        bigint      NOT NULL DEFAULT 0 CHECK (spent >= 0),
  reserved     bigint      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  PRIMARY KEY (budget_id, window_start)
);

-- Open reservations: released by settle, by a failed call, or once expired (a crashed instance).
CREATE TABLE budget_reservations (
  id          text        PRIMARY KEY,
  request_id  text,
  agent_id    text,
  user_id     text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  expires_at  timestamptz NOT NULL
);
CREATE INDEX budget_reservations_expires_at ON budget_reservations (expires_at);

CREATE TABLE budget_reservation_items (
  reservation_id text        NOT NULL REFERENCES budget_reservations (id) ON DELETE CASCADE,
  budget_id      text        NOT NULL,
  window_start   timestamptz NOT NULL,
  amount         bigint      NOT NULL CHECK (amount >= 0),
  PRIMARY KEY (reservation_id, budget_id),
  FOREIGN KEY (budget_id, window_start) REFERENCES budget_usage (budget_id, window_start) ON DELETE CASCADE
);
CREATE INDEX budget_reservation_items_budget ON budget_reservation_items (budget_id, window_start);

-- LLM providers are a connection kind of their own (src/llm).
ALTER TABLE connections DROP CONSTRAINT connections_kind_check;
ALTER TABLE connections ADD CONSTRAINT connections_kind_check CHECK (kind IN ('api_key', 'oauth2_client_credentials', 'oauth2_user', 'on_behalf_of', 'llm'));

-- Reservations the expiry sweep released: a late settle finds its marker and charges what still
-- fits; a settle that finds neither the reservation nor a marker was a repeat and charges nothing.
CREATE TABLE budget_expired_reservations (
  reservation_id text        PRIMARY KEY,
  released_at    timestamptz NOT NULL DEFAULT now()
);
