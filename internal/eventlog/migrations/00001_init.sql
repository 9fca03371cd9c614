-- +goose Up
CREATE TABLE providers (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL DEFAULT '',
    base_url   TEXT NOT NULL,
    models     TEXT NOT NULL,          -- JSON array of model objects
    demo       INTEGER NOT NULL DEFAULT 0,
    created    INTEGER NOT NULL        -- unix ms
) STRICT;

CREATE TABLE agents (
    name       TEXT PRIMARY KEY,
    spec       TEXT NOT NULL,          -- JSON: model, models, prompt, permission, tools
    session    TEXT NOT NULL DEFAULT '', -- the pinned opencode session
    builtin    INTEGER NOT NULL DEFAULT 0,
    created    INTEGER NOT NULL,
    updated    INTEGER NOT NULL
) STRICT;

CREATE TABLE inputs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    agent      TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    text       TEXT NOT NULL,
    mode       TEXT NOT NULL,          -- queue | steer
    model      TEXT NOT NULL DEFAULT '',
    state      TEXT NOT NULL,          -- queued | running | steered | done
    turn       TEXT NOT NULL DEFAULT '',
    created    INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX inputs_client ON inputs(agent, client_id);
CREATE INDEX inputs_state ON inputs(agent, state, id);

CREATE TABLE turns (
    id         TEXT PRIMARY KEY,
    agent      TEXT NOT NULL,
    input      INTEGER NOT NULL,
    session    TEXT NOT NULL,
    state      TEXT NOT NULL,          -- running | final | error
    started    INTEGER NOT NULL,
    ended      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX turns_state ON turns(state);

CREATE TABLE events (
    seq        INTEGER PRIMARY KEY,    -- global, strictly increasing
    agent      TEXT NOT NULL,
    turn       TEXT NOT NULL,
    kind       TEXT NOT NULL,
    time       INTEGER NOT NULL,       -- unix ns
    body       BLOB NOT NULL           -- the whole event as JSON
) STRICT;
CREATE INDEX events_agent ON events(agent, seq);

-- Everything up to floor has been pruned by retention.
CREATE TABLE retention (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    floor      INTEGER NOT NULL
) STRICT;
INSERT INTO retention VALUES (1, 0);

CREATE TABLE raw_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    agent      TEXT NOT NULL,
    time       INTEGER NOT NULL,
    type       TEXT NOT NULL,
    body       BLOB NOT NULL
) STRICT;

CREATE TABLE approvals (
    id         TEXT PRIMARY KEY,       -- opencode's permission request id
    agent      TEXT NOT NULL,
    turn       TEXT NOT NULL,
    session    TEXT NOT NULL,
    seq        INTEGER NOT NULL,       -- the permission.asked event
    ask        TEXT NOT NULL,          -- its data, JSON
    state      TEXT NOT NULL,          -- pending | once | always | reject | expired
    message    TEXT NOT NULL DEFAULT '',
    by         TEXT NOT NULL DEFAULT '',
    created    INTEGER NOT NULL,
    resolved   INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX approvals_state ON approvals(state, created);

CREATE TABLE audit (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    time       INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    outcome    TEXT NOT NULL,          -- ok | refused | failed
    detail     TEXT NOT NULL DEFAULT '',
    duration_ms INTEGER NOT NULL DEFAULT 0
) STRICT;

-- +goose Down
DROP TABLE audit;
DROP TABLE approvals;
DROP TABLE raw_events;
DROP TABLE retention;
DROP TABLE events;
DROP TABLE turns;
DROP TABLE inputs;
DROP TABLE agents;
DROP TABLE providers;
