-- Retention (spool.retention): the body of a message whose every recipient is done is
-- emptied once it is older than the retention, and body_retired_at says when. The partial
-- index keeps the sweep to messages that still have their bodies.
ALTER TABLE messages ADD COLUMN body_retired_at REAL;
CREATE INDEX messages_with_body ON messages (id) WHERE body_retired_at IS NULL;
