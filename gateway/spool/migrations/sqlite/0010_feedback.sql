-- Provider feedback (docs/feedback.md): webhook events and DSNs counted per campaign,
-- once each, and the provider's batches forwarded to the platform through an outbox.
--
-- Counts by campaign, kind and minute (the start of the minute the event happened in, by
-- the provider's clock): the campaign's totals are sums, and a rule reads any window of
-- them. Events matching no recipient count under the campaign '' (unattributed).
CREATE TABLE feedback_counts (
    campaign_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    bucket      REAL NOT NULL,
    count       INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, kind, bucket)
);

-- Event IDs already recorded (source-prefixed), so a provider's retry counts once;
-- forgotten after webhooks.sendgrid.max_age and a day.
CREATE TABLE feedback_seen (
    event_id TEXT PRIMARY KEY,
    at       REAL NOT NULL
);
CREATE INDEX feedback_seen_by_time ON feedback_seen (at);

-- A few events per campaign and kind, as evidence.
CREATE TABLE feedback_samples (
    id          INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    at          REAL NOT NULL,
    recipient   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    evidence    TEXT NOT NULL
);
CREATE INDEX feedback_samples_by_campaign ON feedback_samples (campaign_id, kind, id);

-- Batches to forward to webhooks.sendgrid.forward_url: pending (with attempts, the next
-- attempt and a lease while one replica sends it), delivered, or dead after the maximum age.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    body            BLOB NOT NULL,
    events          INTEGER NOT NULL,
    state           TEXT NOT NULL,
    received_at     REAL NOT NULL,
    queued_at       REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    lease_owner     TEXT,
    lease_until     REAL,
    last_error      TEXT NOT NULL DEFAULT '',
    updated_at      REAL NOT NULL
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
