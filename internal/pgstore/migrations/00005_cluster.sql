-- +goose Up
-- The daemons sharing the database (serve --cluster), each registered
-- while it renews: what placement weighs (its instance slots, its free
-- memory), what a pin names (its id, its labels), and the storage its
-- agents' directories are on (a daemon sharing that storage can take an
-- agent over; another cannot).
CREATE TABLE daemons (
    id       TEXT PRIMARY KEY,
    addr     TEXT NOT NULL DEFAULT '',
    labels   TEXT NOT NULL DEFAULT '', -- "k=v,k=v"
    storage  TEXT NOT NULL DEFAULT '',
    agents   TEXT NOT NULL DEFAULT '', -- the agents' directory's path
    slots    INTEGER NOT NULL DEFAULT 0,
    memory   BIGINT NOT NULL DEFAULT 0,
    draining BOOLEAN NOT NULL DEFAULT false,
    started  TIMESTAMPTZ NOT NULL,
    expires  TIMESTAMPTZ NOT NULL
);
-- Where an agent may run: pin names a daemon or a label (k=v), '' any;
-- storage is the storage its directory is on, '' until its first owner.
CREATE TABLE placements (
    agent   TEXT PRIMARY KEY,
    pin     TEXT NOT NULL DEFAULT '',
    storage TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE placements;
DROP TABLE daemons;
