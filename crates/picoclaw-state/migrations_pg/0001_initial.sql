-- picoclaw on PostgreSQL: the same stores as on SQLite (see ../migrations), one schema.

-- Sessions and messages. Timestamps are RFC 3339 text, as on SQLite.
CREATE SEQUENCE session_revision;

CREATE TABLE sessions (
    key               TEXT PRIMARY KEY NOT NULL,
    summary           TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    revision          BIGINT NOT NULL DEFAULT 0,
    compacted_through BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_revision ON sessions (revision);

CREATE TABLE messages (
    id          BIGSERIAL PRIMARY KEY,
    session_key TEXT NOT NULL REFERENCES sessions (key) ON DELETE CASCADE,
    role        TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX messages_by_session ON messages (session_key, id);

-- The usage ledger.
CREATE TABLE usage (
    id                BIGSERIAL PRIMARY KEY,
    session_key       TEXT NOT NULL,
    model             TEXT NOT NULL,
    day               TEXT NOT NULL,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX usage_by_day ON usage (day);

-- Long-term memory index, searched with a GIN index over an English tsvector.
CREATE TABLE memory_sources (
    source      TEXT PRIMARY KEY NOT NULL,
    fingerprint TEXT NOT NULL,
    indexed_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE memory_notes (
    id     BIGSERIAL PRIMARY KEY,
    source TEXT NOT NULL REFERENCES memory_sources (source) ON DELETE CASCADE,
    line   BIGINT NOT NULL,
    text   TEXT NOT NULL,
    tsv    TSVECTOR GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX memory_notes_by_source ON memory_notes (source);
CREATE INDEX memory_notes_tsv ON memory_notes USING GIN (tsv);

-- Scheduled jobs.
CREATE TABLE cron_jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    enabled          BOOLEAN NOT NULL,
    schedule         TEXT NOT NULL,
    payload          TEXT NOT NULL,
    next_run_at      BIGINT,
    last_run_at      BIGINT,
    last_status      TEXT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    delete_after_run BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX cron_jobs_due ON cron_jobs (enabled, next_run_at);

CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);

CREATE TABLE inbound_journal (
    id           BIGSERIAL PRIMARY KEY,
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    session_key  TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    processed_at BIGINT,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_unprocessed ON inbound_journal (processed_at, id);

CREATE TABLE outbox (
    id          BIGSERIAL PRIMARY KEY,
    channel     TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    due_at      BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    attempts    BIGINT NOT NULL DEFAULT 0,
    last_error  TEXT,
    dead        BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_due ON outbox (dead, due_at);

CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
