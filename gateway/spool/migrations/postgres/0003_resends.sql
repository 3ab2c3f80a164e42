-- A platform that lost the 250 to a crash sends the same transaction again: the same
-- client, envelope and bytes (Message-ID included). resend_key is a digest of those, set
-- only for messages with their own Message-ID, so admission can answer the retry with the
-- message already stored instead of storing (and holding, and relaying) it twice.
ALTER TABLE messages ADD COLUMN resend_key BYTEA;
CREATE INDEX messages_by_resend_key ON messages (resend_key) WHERE resend_key IS NOT NULL;
