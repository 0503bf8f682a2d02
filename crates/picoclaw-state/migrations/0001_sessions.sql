-- Sessions and their messages. Each message row holds one ChatMessage as JSON.
CREATE TABLE sessions (
    key        TEXT PRIMARY KEY NOT NULL,
    summary    TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- Strictly increasing across all sessions: orders listings even within one millisecond.
    revision   INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX messages_by_session ON messages (session_key, id);
CREATE INDEX sessions_by_revision ON sessions (revision);
