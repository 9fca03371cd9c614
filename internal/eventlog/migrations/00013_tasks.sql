-- +goose Up
-- Tasks one agent handed another: the receiver's input, and once it ended
-- the result, which went to the caller's conversation as an input of its own.
CREATE TABLE tasks (
  id           TEXT PRIMARY KEY,
  from_agent   TEXT NOT NULL,
  to_agent     TEXT NOT NULL,
  text         TEXT NOT NULL,
  conversation TEXT NOT NULL, -- the caller's, for the result
  input        INTEGER NOT NULL, -- the receiver's
  state        TEXT NOT NULL, -- open, done, error, cancelled
  result       TEXT NOT NULL DEFAULT '',
  result_input INTEGER NOT NULL DEFAULT 0, -- the caller's
  created      INTEGER NOT NULL,
  ended        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX tasks_state ON tasks(state);
CREATE INDEX tasks_from ON tasks(from_agent);
CREATE INDEX tasks_to ON tasks(to_agent);
-- An input a task sent, or a task's result: the task, and the agent it
-- came from.
ALTER TABLE inputs ADD COLUMN task TEXT NOT NULL DEFAULT '';
ALTER TABLE inputs ADD COLUMN from_agent TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE inputs DROP COLUMN from_agent;
ALTER TABLE inputs DROP COLUMN task;
DROP TABLE tasks;
