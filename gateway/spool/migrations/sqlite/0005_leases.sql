-- Leases expire (issue 12): every claim first looks for leases that ran out. Only rows in
-- delivery are indexed, so the look-up is one seek however large the spool grows.
CREATE INDEX recipients_leased ON recipients (lease_until) WHERE state = 'sending';
