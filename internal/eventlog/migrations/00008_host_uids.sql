-- +goose Up
-- The host uid of each agent's instance (gid the same). A row outlives its
-- agent (renamed to the agent's tombstone): a uid is never handed out
-- twice.
CREATE TABLE host_uids (
    uid INTEGER PRIMARY KEY,
    agent TEXT NOT NULL
);
CREATE INDEX host_uids_agent ON host_uids(agent);

-- +goose Down
DROP TABLE host_uids;
