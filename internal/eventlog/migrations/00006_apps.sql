-- +goose Up
-- The gate of the App Builder: every package submitted, by its sha256,
-- with the report of its re-validation and a person's decision.
CREATE TABLE apps (
    sha256       TEXT PRIMARY KEY,
    app_id       TEXT NOT NULL,
    version      TEXT NOT NULL,
    state        TEXT NOT NULL,          -- refused | pending | approved | rejected
    report       TEXT NOT NULL,          -- appkit.Report, JSON
    submitted_by TEXT NOT NULL,
    decided_by   TEXT NOT NULL DEFAULT '',
    message      TEXT NOT NULL DEFAULT '',
    created      INTEGER NOT NULL,
    decided      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX apps_id ON apps(app_id, state, created);

-- +goose Down
DROP TABLE apps;
