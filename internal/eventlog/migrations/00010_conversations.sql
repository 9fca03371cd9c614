-- +goose Up
-- A message may name the conversation (the opencode session) its turn runs
-- in; '' is the agent's current one. Conversations are listed from the
-- turns, by agent and session.
ALTER TABLE inputs ADD COLUMN conversation TEXT NOT NULL DEFAULT '';
CREATE INDEX turns_agent_session ON turns(agent, session, started);

-- +goose Down
DROP INDEX turns_agent_session;
ALTER TABLE inputs DROP COLUMN conversation;
