-- +goose Up
-- An agent's schedules: a cron expression in a time zone, or an interval
-- from an anchor. last_slot is the newest slot fired or passed over (ms):
-- a slot at or before it is never fired again.
CREATE TABLE schedules (
  id           TEXT PRIMARY KEY,
  agent        TEXT NOT NULL,
  cron         TEXT NOT NULL DEFAULT '',
  tz           TEXT NOT NULL DEFAULT '',
  every_ms     INTEGER NOT NULL DEFAULT 0,
  message      TEXT NOT NULL,
  conversation TEXT NOT NULL DEFAULT '',
  missed       TEXT NOT NULL,
  overlap      TEXT NOT NULL,
  created_by   TEXT NOT NULL,
  created      INTEGER NOT NULL,
  last_slot    INTEGER NOT NULL,
  last_input   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX schedules_agent ON schedules(agent);
-- One row per slot fired: the slot's one input, committed with it.
CREATE TABLE schedule_slots (
  schedule TEXT NOT NULL,
  slot     INTEGER NOT NULL,
  input    INTEGER NOT NULL,
  PRIMARY KEY (schedule, slot)
);
-- The schedule an input came from ('' for none).
ALTER TABLE inputs ADD COLUMN schedule TEXT NOT NULL DEFAULT '';

-- +goose Down
ALTER TABLE inputs DROP COLUMN schedule;
DROP TABLE schedule_slots;
DROP TABLE schedules;
