-- Dead letters become records. Same columns, rules and reasons as the PostgreSQL script, except:
-- SQLite cannot add an identity column, so the table is rebuilt with `sequence` as its rowid
-- (INTEGER PRIMARY KEY AUTOINCREMENT: never reused, always above every sequence ever given); the
-- id stays unique and is still what EF and the API key on. No trigram search: LIKE reads the rows.
CREATE TABLE dead_letters_records (
    sequence         INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    queue            TEXT NOT NULL,
    message_id       TEXT NOT NULL,
    body             TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    reason           TEXT NOT NULL,
    dead_lettered_at TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'dead'
                     CONSTRAINT ck_dead_letters_state CHECK (state IN ('dead', 'replayed', 'deleted')),
    settled_at       TEXT NULL,
    settled_by       TEXT NULL,
    CONSTRAINT ck_dead_letters_settled
        CHECK ((state = 'dead') = (settled_at IS NULL) AND (settled_at IS NULL) = (settled_by IS NULL)),
    UNIQUE (queue, message_id)
);

INSERT INTO dead_letters_records (id, queue, message_id, body, attempts, reason, dead_lettered_at)
SELECT id, queue, message_id, body, attempts, reason, dead_lettered_at FROM dead_letters ORDER BY dead_lettered_at, id;

DROP TABLE dead_letters;
ALTER TABLE dead_letters_records RENAME TO dead_letters;

CREATE INDEX ix_dead_letters_state_sequence ON dead_letters (state, sequence DESC);
CREATE INDEX ix_dead_letters_queue_state_sequence ON dead_letters (queue, state, sequence);
CREATE INDEX ix_dead_letters_message_id ON dead_letters (message_id);
CREATE INDEX ix_dead_letters_state_dead_lettered ON dead_letters (state, dead_lettered_at);
