-- sendbrake spool, version 2: quarantine review, manifests, audit, tokens, relay flags.
ALTER TABLE campaigns ADD COLUMN duplicates INTEGER NOT NULL DEFAULT 0;
ALTER TABLE campaigns ADD COLUMN acknowledged TEXT NOT NULL DEFAULT '[]';
ALTER TABLE campaigns ADD COLUMN sample_message_id TEXT;
ALTER TABLE campaigns ADD COLUMN held_at REAL;

ALTER TABLE recipients ADD COLUMN mailbox TEXT NOT NULL DEFAULT '';
UPDATE recipients SET mailbox = lower(trim(address));
-- When the recipient last entered the queue (receipt or release): relay.max_age counts
-- from here, so time spent on hold never uses up the retry budget.
ALTER TABLE recipients ADD COLUMN queued_at REAL NOT NULL DEFAULT 0;
UPDATE recipients SET queued_at = updated_at;
CREATE INDEX recipients_by_mailbox ON recipients (campaign_id, mailbox);

-- Declarations registered before sending; client '*' applies to every client.
CREATE TABLE manifests (
    client     TEXT NOT NULL,
    key        TEXT NOT NULL,
    size       INTEGER,
    category   TEXT,
    locale     TEXT,
    created_by TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (client, key)
);

-- What happened to a campaign, in order: created, held, released, rejected, approvals.
CREATE TABLE campaign_events (
    id          INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    at          REAL NOT NULL,
    event       TEXT NOT NULL,
    actor       TEXT NOT NULL,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX campaign_events_by_campaign ON campaign_events (campaign_id, id);

-- Operators who approved a pending release (two-person rule); cleared when it happens.
CREATE TABLE release_approvals (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    actor       TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (campaign_id, actor)
);

-- Append-only record of every mutating API call, refused ones included.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    reason  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_is_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_is_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

-- API tokens added with `sendbrake tokens add`: only the SHA-256 of the token is kept.
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    sha256     TEXT NOT NULL UNIQUE,
    roles      TEXT NOT NULL,
    identity   TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
);

CREATE TABLE flags (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
