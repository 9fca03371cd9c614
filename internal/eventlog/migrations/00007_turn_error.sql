-- +goose Up
-- The seq of the error that ended a turn: an agent's last error is found
-- without scanning its events.
ALTER TABLE turns ADD COLUMN error_seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX turns_agent ON turns(agent, state, started);

-- +goose Down
DROP INDEX turns_agent;
ALTER TABLE turns DROP COLUMN error_seq;
