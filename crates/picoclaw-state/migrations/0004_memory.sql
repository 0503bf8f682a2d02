-- Long-term memory index: notes of the workspace's memory files, searched with FTS5. The files
-- stay the source of truth; this index can be dropped and rebuilt from them.
CREATE TABLE memory_sources (
    source      TEXT PRIMARY KEY NOT NULL,  -- relative to the workspace: memory/MEMORY.md
    fingerprint TEXT NOT NULL,              -- size and modification time when indexed
    indexed_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE memory_notes (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL REFERENCES memory_sources (source) ON DELETE CASCADE,
    line   INTEGER NOT NULL,
    text   TEXT NOT NULL
);

CREATE INDEX memory_notes_by_source ON memory_notes (source);

-- External-content FTS5 table over memory_notes.text, kept in step by triggers. Porter stemming
-- over unicode61 lets "likes" find "like".
CREATE VIRTUAL TABLE memory_fts USING fts5 (
    text,
    content = 'memory_notes',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER memory_notes_ai AFTER INSERT ON memory_notes BEGIN
    INSERT INTO memory_fts (rowid, text) VALUES (new.id, new.text);
END;

CREATE TRIGGER memory_notes_ad AFTER DELETE ON memory_notes BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
