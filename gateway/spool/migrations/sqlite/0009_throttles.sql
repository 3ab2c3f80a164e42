-- Relay throttles (policy kind `throttle`, gateway/spool/sql_throttle.py). One GCRA bucket
-- per row: its theoretical arrival time; a bucket with no row is full. A recipient a
-- throttle makes wait names the rule in `throttled`; `throttle_paid` says its slot was
-- charged to the buckets already (it goes at its next_attempt_at without a second charge).
CREATE TABLE throttle_buckets (
    bucket TEXT PRIMARY KEY,
    tat REAL NOT NULL
);
CREATE INDEX throttle_buckets_by_tat ON throttle_buckets (tat);
ALTER TABLE recipients ADD COLUMN throttled TEXT;
ALTER TABLE recipients ADD COLUMN throttle_paid INTEGER NOT NULL DEFAULT 0;
CREATE INDEX recipients_throttled ON recipients (campaign_id, throttled) WHERE throttled IS NOT NULL;
