-- +goose Up
-- Where a person is told of what waits for them or went wrong: ntfy, a
-- webhook, Web Push. Each channel's secrets are files of the home (0600).
CREATE TABLE notify_channels (
  id         TEXT PRIMARY KEY,
  kind       TEXT NOT NULL, -- ntfy, webhook, webpush
  url        TEXT NOT NULL, -- the topic, the receiver, the push endpoint
  link       TEXT NOT NULL, -- the panel's URL, for the notifications' links
  agents     TEXT NOT NULL, -- JSON list; empty: every agent
  kinds      TEXT NOT NULL, -- JSON list; empty: every kind
  details    INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  created    INTEGER NOT NULL
);
-- The outbox: one row per (channel, source), delivered at least once.
CREATE TABLE notifications (
  id         TEXT PRIMARY KEY,
  channel    TEXT NOT NULL,
  source     TEXT NOT NULL, -- what it tells of: event:SEQ
  kind       TEXT NOT NULL,
  agent      TEXT NOT NULL,
  title      TEXT NOT NULL,
  body       TEXT NOT NULL,
  ref        TEXT NOT NULL, -- the approval's or question's id, if any
  state      TEXT NOT NULL, -- pending, sent, failed
  attempts   INTEGER NOT NULL DEFAULT 0,
  next_at    INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT '',
  created    INTEGER NOT NULL,
  sent       INTEGER NOT NULL DEFAULT 0,
  UNIQUE (channel, source)
);
CREATE INDEX notifications_due ON notifications(state, next_at);
-- How far the notifier has read the log: enqueued with what it read.
CREATE TABLE notify_cursor (
  id  INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);

-- +goose Down
DROP TABLE notify_cursor;
DROP TABLE notifications;
DROP TABLE notify_channels;
