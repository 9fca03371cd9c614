-- +goose Up
-- The event log on PostgreSQL: the same events as the SQLite log's, one
-- global sequence. head holds the last seq given out: a writer takes its
-- seqs by updating it, which locks the row until the writer's transaction
-- ends, so seqs are given out in commit order (a reader at N never passes
-- N+1 while N+1 is still in flight).
CREATE TABLE events (
    seq   BIGINT PRIMARY KEY,
    agent TEXT NOT NULL,
    turn  TEXT NOT NULL,
    kind  TEXT NOT NULL,
    time  BIGINT NOT NULL, -- unix ns
    body  BYTEA NOT NULL   -- the whole event as JSON
);
CREATE INDEX events_agent ON events(agent, seq);
CREATE TABLE head (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO head(id, seq) VALUES (1, 0);

-- +goose Down
DROP TABLE head;
DROP TABLE events;
