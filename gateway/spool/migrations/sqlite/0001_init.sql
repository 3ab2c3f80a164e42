-- sendbrake spool, version 1: campaigns, messages stored once, one row per recipient.
CREATE TABLE campaigns (
    id                TEXT PRIMARY KEY,
    client            TEXT NOT NULL,
    key               TEXT NOT NULL,
    implicit          INTEGER NOT NULL,
    state             TEXT NOT NULL,
    sender            TEXT NOT NULL,
    subject           TEXT NOT NULL,
    declared_size     INTEGER,
    declared_category TEXT,
    declared_locale   TEXT,
    received          INTEGER NOT NULL DEFAULT 0,
    queued            INTEGER NOT NULL DEFAULT 0,
    held              INTEGER NOT NULL DEFAULT 0,
    relayed           INTEGER NOT NULL DEFAULT 0,
    deferred          INTEGER NOT NULL DEFAULT 0,
    failed            INTEGER NOT NULL DEFAULT 0,
    discarded         INTEGER NOT NULL DEFAULT 0,
    suppressed        INTEGER NOT NULL DEFAULT 0,
    escaped           INTEGER NOT NULL DEFAULT 0,
    findings          TEXT NOT NULL DEFAULT '[]',
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL
);
CREATE INDEX campaigns_by_key ON campaigns (client, key, created_at);
CREATE INDEX campaigns_by_state ON campaigns (state, id);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    client      TEXT NOT NULL,
    mail_from   TEXT NOT NULL,
    content     BLOB NOT NULL,
    size        INTEGER NOT NULL,
    ingress     TEXT NOT NULL,
    received_at REAL NOT NULL
);
CREATE INDEX messages_by_campaign ON messages (campaign_id, id);

CREATE TABLE recipients (
    id              INTEGER PRIMARY KEY,
    message_id      TEXT NOT NULL REFERENCES messages (id),
    campaign_id     TEXT NOT NULL REFERENCES campaigns (id),
    address         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_owner     TEXT,
    lease_until     REAL,
    last_reply      TEXT NOT NULL DEFAULT '',
    updated_at      REAL NOT NULL
);
CREATE INDEX recipients_due ON recipients (state, next_attempt_at);
CREATE INDEX recipients_by_message ON recipients (message_id);
CREATE INDEX recipients_by_campaign ON recipients (campaign_id, state);
