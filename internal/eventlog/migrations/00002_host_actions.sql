-- +goose Up
-- Approvals asked by taosagent's own tools beside opencode's.
ALTER TABLE approvals ADD COLUMN source TEXT NOT NULL DEFAULT 'opencode'; -- opencode | taosagent

-- The audit records each host action twice: its intent before it runs
-- (phase 'intent', outcome 'pending') and its outcome after.
ALTER TABLE audit ADD COLUMN phase    TEXT NOT NULL DEFAULT '';   -- intent | outcome | '' (one-shot)
ALTER TABLE audit ADD COLUMN session  TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN tier     TEXT NOT NULL DEFAULT '';   -- read | write | destructive
ALTER TABLE audit ADD COLUMN digest   TEXT NOT NULL DEFAULT '';   -- sha256 of the canonical arguments
ALTER TABLE audit ADD COLUMN approval TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN approver TEXT NOT NULL DEFAULT '';
ALTER TABLE audit ADD COLUMN snapshot TEXT NOT NULL DEFAULT '';
CREATE INDEX audit_actor ON audit(actor, id);

-- +goose Down
DROP INDEX audit_actor;
ALTER TABLE audit DROP COLUMN snapshot;
ALTER TABLE audit DROP COLUMN approver;
ALTER TABLE audit DROP COLUMN approval;
ALTER TABLE audit DROP COLUMN digest;
ALTER TABLE audit DROP COLUMN tier;
ALTER TABLE audit DROP COLUMN session;
ALTER TABLE audit DROP COLUMN phase;
ALTER TABLE approvals DROP COLUMN source;
