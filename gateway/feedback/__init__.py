"""Provider feedback: webhook events and SMTP reports, counted per campaign and forwarded.

`sendgrid` verifies and parses SendGrid's Signed Event Webhook, `intake` attributes and
records events (and DSNs parsed by `gateway.mail.dsn`) through the spool, `forwarder`
sends the recorded batches on to the platform's own webhook URL with retries. A stage of
layer 2: it never imports another stage (docs/feedback.md).
"""
