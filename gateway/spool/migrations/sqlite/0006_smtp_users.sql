-- SMTP AUTH users (`sendbrake users add`): a salted argon2id hash, never the password.
-- sender_domains is a JSON list of the domains MAIL FROM may use ([] = any).
CREATE TABLE smtp_users (
    name           TEXT PRIMARY KEY,
    password_hash  TEXT NOT NULL,
    sender_domains TEXT NOT NULL DEFAULT '[]',
    created_at     REAL NOT NULL
);
