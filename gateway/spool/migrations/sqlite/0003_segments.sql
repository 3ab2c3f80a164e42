-- sendbrake spool, version 3: audience segments, per-campaign tallies, frequency caps.
ALTER TABLE recipients ADD COLUMN mailbox_hash INTEGER NOT NULL DEFAULT 0;

-- One row per segment name, pointing at its live version. Replacing a segment loads a new
-- version beside the old one and then moves this pointer in one transaction, so readers
-- see the old list or the new one, never half of one.
CREATE TABLE segments (
    name      TEXT PRIMARY KEY,
    version   INTEGER NOT NULL,
    size      INTEGER NOT NULL,
    lines     INTEGER NOT NULL,
    invalid   INTEGER NOT NULL,
    source    TEXT NOT NULL,
    digest    TEXT,
    loaded_by TEXT NOT NULL,
    loaded_at REAL NOT NULL
);

-- Every version ever started: loading, live, or retired (its members being deleted).
CREATE TABLE segment_versions (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    state      TEXT NOT NULL,
    started_at REAL NOT NULL
);

-- Members as 64-bit hashes of normalised addresses: 8 bytes each plus the B-tree.
CREATE TABLE segment_members (
    version INTEGER NOT NULL,
    hash    INTEGER NOT NULL,
    PRIMARY KEY (version, hash)
) WITHOUT ROWID;

-- Running counts per campaign that rules need (members of a segment reached so far, ...).
CREATE TABLE campaign_tallies (
    campaign_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    value       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, name)
) WITHOUT ROWID;

-- Accepted recipients of campaigns a frequency cap counts, for its rolling window.
CREATE TABLE frequency (
    rule TEXT NOT NULL,
    hash INTEGER NOT NULL,
    at   REAL NOT NULL
);
CREATE INDEX frequency_lookup ON frequency (rule, hash, at);
