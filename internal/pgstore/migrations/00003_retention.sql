-- +goose Up
-- Everything up to floor has been pruned by retention.
CREATE TABLE retention (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    floor BIGINT NOT NULL
);
INSERT INTO retention(id, floor) VALUES (1, 0);

-- +goose Down
DROP TABLE retention;
