-- +goose Up
-- A message's trace id (taOS's): every event of its turn carries it, and
-- its reply stream is found (and resumed) by it.
ALTER TABLE inputs ADD COLUMN trace_id TEXT NOT NULL DEFAULT '';
CREATE INDEX inputs_trace ON inputs(agent, trace_id) WHERE trace_id != '';

-- +goose Down
DROP INDEX inputs_trace;
ALTER TABLE inputs DROP COLUMN trace_id;
