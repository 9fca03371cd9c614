-- +goose Up
-- An agent's explicit move to another daemon on other storage (per-node
-- directories; taosagent move): asked, then packed by its owner between
-- its turns (its directory and its MCP servers' state, one archive, in
-- chunks), then unpacked by the target, which deletes the row.
CREATE TABLE moves (
    agent  TEXT PRIMARY KEY,
    target TEXT NOT NULL,                  -- the daemon it moves to
    state  TEXT NOT NULL DEFAULT 'asked',  -- asked, packed, failed
    source TEXT NOT NULL DEFAULT '',       -- the daemon that packed it
    dir    TEXT NOT NULL DEFAULT '',       -- its agents' directory's path there
    size   BIGINT NOT NULL DEFAULT 0,      -- the archive's bytes
    error  TEXT NOT NULL DEFAULT '',       -- the last attempt's failure
    asked  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE move_chunks (
    agent TEXT NOT NULL,
    n     INTEGER NOT NULL,
    data  BYTEA NOT NULL,
    PRIMARY KEY (agent, n)
);

-- +goose Down
DROP TABLE move_chunks;
DROP TABLE moves;
