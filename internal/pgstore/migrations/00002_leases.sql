-- +goose Up
-- Each agent is owned by one daemon at a time: its lease, with an expiry
-- on the database's clock and a fencing token that only grows. A write for
-- the agent carries its owner's token and is refused once a newer lease
-- exists or this one expired.
CREATE TABLE leases (
    agent   TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    token   BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE leases;
