-- +goose Up
-- Each agent's gateway key, stored hashed (sha256, hex).
CREATE TABLE agent_keys (
    agent      TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    created    INTEGER NOT NULL
) STRICT;

-- Model usage through the gateway, per agent, model and day (UTC).
CREATE TABLE usage (
    agent         TEXT NOT NULL,
    model         TEXT NOT NULL,
    day           TEXT NOT NULL,       -- YYYY-MM-DD
    requests      INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    cost          REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (agent, model, day)
) STRICT;

-- +goose Down
DROP TABLE usage;
DROP TABLE agent_keys;
