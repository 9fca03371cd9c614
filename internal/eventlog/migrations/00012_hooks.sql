-- +goose Up
-- Webhooks that start an agent's turns; their secrets are files of the
-- home (0600), never in the database.
CREATE TABLE hooks (
  id         TEXT PRIMARY KEY,
  agent      TEXT NOT NULL,
  template   TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created    INTEGER NOT NULL
);
CREATE INDEX hooks_agent ON hooks(agent);
-- One row per delivery accepted: its signature, so that a replay of it
-- starts nothing.
CREATE TABLE hook_deliveries (
  hook      TEXT NOT NULL,
  signature TEXT NOT NULL,
  time      INTEGER NOT NULL,
  input     INTEGER NOT NULL,
  PRIMARY KEY (hook, signature)
);

-- +goose Down
DROP TABLE hook_deliveries;
DROP TABLE hooks;
