"""Ingress stages: where mail enters the gateway (SMTP now, an HTTP send API later)."""
