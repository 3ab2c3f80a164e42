-- Canary releases (docs/feedback.md): one row per campaign, the latest canary it had.
-- The partial index keeps the watcher's look-up to canaries still sending or observing.
CREATE TABLE canaries (
    campaign_id TEXT PRIMARY KEY REFERENCES campaigns (id),
    recipients  BIGINT NOT NULL,
    observe     DOUBLE PRECISION NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    state       TEXT NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    sent_at     DOUBLE PRECISION,
    decided_at  DOUBLE PRECISION
);
CREATE INDEX canaries_active ON canaries (started_at) WHERE state IN ('sending', 'observing');
