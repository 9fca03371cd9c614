-- +goose Up
-- Requests of opencode's question tool: a projection of the question.asked
-- and question.resolved events, as approvals are of the permission ones.
CREATE TABLE questions (
    id         TEXT PRIMARY KEY,       -- opencode's question request id
    agent      TEXT NOT NULL,
    turn       TEXT NOT NULL,
    session    TEXT NOT NULL,
    seq        INTEGER NOT NULL,       -- the question.asked event
    call_id    TEXT NOT NULL DEFAULT '',
    questions  TEXT NOT NULL,          -- JSON, as opencode asked them
    state      TEXT NOT NULL,          -- pending | answered | rejected | expired
    answers    TEXT NOT NULL DEFAULT '', -- JSON, one list per question
    message    TEXT NOT NULL DEFAULT '',
    by         TEXT NOT NULL DEFAULT '',
    created    INTEGER NOT NULL,
    resolved   INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX questions_state ON questions(state, created);

-- +goose Down
DROP TABLE questions;
