"""Audience segments: reading address lists (pure) and loading them into the spool."""
