-- Scheduled jobs. schedule and payload hold the original PicoClaw's JSON shapes.
CREATE TABLE cron_jobs (
    id               TEXT PRIMARY KEY NOT NULL,
    name             TEXT NOT NULL,
    enabled          INTEGER NOT NULL,
    schedule         TEXT NOT NULL,
    payload          TEXT NOT NULL,
    next_run_at      INTEGER,           -- ms since the epoch
    last_run_at      INTEGER,
    last_status      TEXT,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    delete_after_run INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cron_jobs_due ON cron_jobs (enabled, next_run_at);

-- Small runtime values.
CREATE TABLE kv (
    namespace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);

-- Every received message, before it is processed; (channel, external_id) recognises redeliveries.
CREATE TABLE inbound_journal (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    channel      TEXT NOT NULL,
    external_id  TEXT NOT NULL,
    session_key  TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    processed_at INTEGER,
    UNIQUE (channel, external_id)
);
CREATE INDEX inbound_unprocessed ON inbound_journal (processed_at, id);

-- Replies waiting for delivery; a claim is a lease (lease_owner until lease_until).
CREATE TABLE outbox (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT NOT NULL,
    chat_id     TEXT NOT NULL,
    payload     TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    due_at      INTEGER NOT NULL,
    lease_owner TEXT,
    lease_until INTEGER,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    dead        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_due ON outbox (dead, due_at);

-- Named expiring leases (a session processed by one gateway instance at a time).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
