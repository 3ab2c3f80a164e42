-- sendbrake spool, version 4: sign-offs of protected identities (signature policy).
-- One row per identity that approved a campaign; registering again replaces the row.
CREATE TABLE signoffs (
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    identity    TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    on_behalf   INTEGER NOT NULL DEFAULT 0,
    at          REAL NOT NULL,
    PRIMARY KEY (campaign_id, identity)
) WITHOUT ROWID;
